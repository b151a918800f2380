"""`alprd web`: search pages and a REST API over the stored events, in a process
of its own (`app`), reading the daemon's store (`store`)."""
