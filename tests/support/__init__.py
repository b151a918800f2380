"""What the tests share beyond conftest's fixtures: stand-ins for parts that are
not processes (the sd_notify socket), the harnesses that run the daemon (in a
child process or in a thread: daemon.py) and the real-systemd boot scripts."""
