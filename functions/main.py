"""Entry points, one per deployed function (aperture.functions.FUNCTIONS); each hands its
request or event to the handler the registry builds from the instance's container."""

import functions_framework
from cloudevents.http import CloudEvent
from flask import request as current_request
from werkzeug.exceptions import HTTPException, NotFound

from aperture.api.errors import error_response, unhandled
from aperture.functions import handler


@functions_framework.errorhandler(NotFound)
def not_found(error):
    # functions-framework's own route cannot carry some paths (a control
    # character in a segment) and answers them before any handler: as JSON too.
    return error_response(404, "no route for this path")


@functions_framework.errorhandler(Exception)
def uncaught(error):
    # What escaped every handler (a key check that could not reach Firestore, an
    # event whose backend is down): 503 with Retry-After for an unreachable
    # backend, else a JSON 500 with the request id; never Flask's HTML page.
    if isinstance(error, HTTPException):
        return error
    return unhandled(current_request, error)[0]


@functions_framework.http
def stats(request):
    return handler("stats")(request)


@functions_framework.http
def admin(request):
    return handler("admin")(request)


@functions_framework.http
def upload(request):
    return handler("upload")(request)


@functions_framework.http
def images(request):
    return handler("images")(request)


@functions_framework.http
def search(request):
    return handler("search")(request)


@functions_framework.http
def jobs(request):
    return handler("jobs")(request)


@functions_framework.http
def web(request):
    return handler("web")(request)


@functions_framework.cloud_event
def process(event: CloudEvent) -> None:
    handler("process")(event)


@functions_framework.cloud_event
def transform(event: CloudEvent) -> None:
    handler("transform")(event)


@functions_framework.cloud_event
def repair(event: CloudEvent) -> None:
    handler("repair")(event)
