"""Entry points, one per deployed function; each delegates to the aperture package."""

import functions_framework
from cloudevents.http import CloudEvent

from aperture import admin_http, clients, process_events, stats_http


@functions_framework.http
def stats(request):
    return stats_http.handle(request)


@functions_framework.cloud_event
def process(event: CloudEvent) -> None:
    if event["type"] != process_events.FINALIZED:
        return
    process_events.record_finalized(clients.firestore_client(), event.get_attributes(), event.data)


@functions_framework.http
def admin(request):
    return admin_http.handle(request)
