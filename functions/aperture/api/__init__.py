"""Thin Flask adapters: parse the request, call a service, shape the answer."""
