"""Messages and their delivery."""
