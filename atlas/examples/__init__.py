"""Example models for the python: scheme (bring your own network)."""
