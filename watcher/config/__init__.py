"""watches.toml -> validated, frozen models."""
