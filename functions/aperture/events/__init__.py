"""CloudEvent handlers."""
