"""Running outreach: the daemon and its parts (systemd, logs, clock), first run and the demo."""
