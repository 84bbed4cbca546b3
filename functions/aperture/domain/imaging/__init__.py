"""Decoding, validating and describing untrusted image bytes."""
