"""Entry points, one per deployed function; each delegates to the aperture package."""

import functions_framework
from cloudevents.http import CloudEvent

from aperture import admin_http, images_http, process_events, stats_http, upload_http


@functions_framework.http
def stats(request):
    return stats_http.handle(request)


@functions_framework.cloud_event
def process(event: CloudEvent) -> None:
    process_events.handle(event)


@functions_framework.http
def admin(request):
    return admin_http.handle(request)


@functions_framework.http
def upload(request):
    return upload_http.handle(request)


@functions_framework.http
def images(request):
    return images_http.handle(request)
