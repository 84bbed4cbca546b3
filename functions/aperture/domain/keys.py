"""API key strings: generation, hashing and shape checks (no I/O).

Keys are random, so a fast hash is enough (no salt or slow KDF needed: there
is nothing to brute-force); only the SHA-256 is stored, and the stored hash is
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

LOCAL_PREFIX = "apk_"
# Local keys are apk_ + 43 url-safe characters; Google API keys are 39 characters
# starting with AIza. Anything outside this shape is malformed and never looked up.
_SHAPE = re.compile(r"[A-Za-z0-9_\-]{20,128}")


def generate() -> str:
    return LOCAL_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(key_hash(key), stored_hash)


def well_formed(key: str | None) -> bool:
    return key is not None and _SHAPE.fullmatch(key) is not None


def display_prefix(key: str) -> str:
    """What lists show so a person can tell keys apart: never enough to use."""
    return key[:8] + "…"


def new_key_id() -> str:
    """The public id of a key, used in lists, audit records and revocation."""
    return "key_" + secrets.token_hex(8)
