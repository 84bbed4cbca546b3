"""The `web` function (spec S11): the web page at `/` and Swagger UI at `/docs`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import flask

from aperture.api.routing import Router

if TYPE_CHECKING:
    from aperture.container import Container


def build(container: Container) -> Callable[[flask.Request], flask.Response]:
    return Router([]).__call__
