"""One function, one handler, served twice: /open without auth and /guarded
behind `aperture.api.auth.keyed` over the container's `Access` (the real key
check with its per-instance key cache, the team mapping and the audit)."""

import functools

import flask
import functions_framework

from aperture.api.auth import keyed
from aperture.container import instance


def _answer(request: flask.Request) -> flask.Response:
    return flask.jsonify({"ok": True, "path": request.path})


@functools.cache
def _guarded():
    return keyed(instance().access, lambda request, principal: _answer(request))


@functions_framework.http
def target(request: flask.Request):
    return _guarded()(request) if request.path == "/guarded" else _answer(request)
