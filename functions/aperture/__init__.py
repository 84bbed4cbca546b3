"""Aperture: image statistics service."""
