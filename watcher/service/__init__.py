"""The running process: the daemon, systemd's protocol and the log output."""
