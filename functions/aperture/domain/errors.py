"""The one error type a caller is told about: a status and a reason.

Services and domain code raise `ApiError`; the HTTP adapters turn it into the
JSON body every endpoint answers with (`aperture.api.errors`). The status is
HTTP's, because that is the vocabulary every caller of this service speaks.
"""

from __future__ import annotations

from collections.abc import Mapping


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def not_found(message: str = "not found") -> ApiError:
    return ApiError(404, message)


class AlreadyExists(Exception):
    """A create-only write found the thing already there."""


class Gone(LookupError):
    """What an operation needed was deleted meanwhile (an object generation, a record)."""


class Unavailable(Exception):
    """A backend this operation needs (Firestore, Cloud Storage, Pub/Sub) cannot be reached just now.

    Raised by adapters that translate their client library's errors; the HTTP
    edge answers it (and the libraries' own unavailability errors) with 503
    and Retry-After (`aperture.api.errors`)."""
