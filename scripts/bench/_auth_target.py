"""One function, one handler, served twice: /open without auth and /guarded
behind `aperture.services.access.team_route` (the real key check, mapping and audit)."""

import functools

import flask
import functions_framework
from google.cloud import firestore

from aperture.services.access import Access, team_route
from aperture.storage.audit import AuditLog
from aperture.storage.identity import IdentityStore


@functools.cache
def _access() -> Access:
    db = firestore.Client()
    return Access(IdentityStore(db), AuditLog(db))


def _answer(request: flask.Request) -> flask.Response:
    return flask.jsonify({"ok": True, "path": request.path})


_guarded = team_route(_access)(lambda request, principal: _answer(request))


@functions_framework.http
def target(request: flask.Request):
    return _guarded(request) if request.path == "/guarded" else _answer(request)
