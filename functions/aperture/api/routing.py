"""One small router: a table of (path, methods, handler), JSON 404/405 for the rest."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import flask
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

from aperture.domain.errors import ApiError


class Router:
    def __init__(self, routes: Iterable[tuple[str, tuple[str, ...], Callable[..., flask.Response]]]):
        self._handlers: dict[str, Callable[..., flask.Response]] = {}
        rules = []
        for index, (path, methods, handler) in enumerate(routes):
            endpoint = f"{index}:{handler.__name__}"
            self._handlers[endpoint] = handler
            rules.append(Rule(path, methods=list(methods), endpoint=endpoint))
        self._map = Map(rules, strict_slashes=False)

    def match(self, request: flask.Request) -> tuple[Callable[..., flask.Response], dict[str, Any]]:
        """The handler and path arguments for the request; ApiError 404/405 when nothing matches."""
        adapter = self._map.bind("localhost", path_info=request.path)
        try:
            endpoint, args = adapter.match(method=request.method)
        except MethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.valid_methods or []))
            raise ApiError(
                405, f"method {request.method} is not allowed here; use {allowed}", {"Allow": allowed}
            ) from None
        except NotFound:
            raise ApiError(404, f"no route for {request.path}") from None
        return self._handlers[endpoint], args

    def __call__(self, request: flask.Request, *context: Any) -> flask.Response:
        handler, args = self.match(request)
        return handler(request, *context, **args)
