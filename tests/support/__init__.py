"""What the tests share beyond conftest's fixtures: stand-ins for parts that are
not processes (the sd_notify socket) and the real-systemd boot scripts."""
