"""Use cases. Each takes its repositories in its constructor (container.py wires them)."""
