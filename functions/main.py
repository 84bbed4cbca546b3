"""Entry points, one per deployed function (aperture.functions.FUNCTIONS); each hands its
request or event to the handler the registry builds from the instance's container."""

import functions_framework
from cloudevents.http import CloudEvent

from aperture.functions import handler


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
