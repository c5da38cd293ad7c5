"""The remote systems: the HTTP client and one provider per system."""
