"""The registry of deployed functions: name -> trigger -> handler.

`main.py` defines one entry point per entry here; the local stack starts one
functions-framework process per entry; Terraform's function table and the
tests in tests/infra are checked against it. Handlers are built on the first
call of an instance, from the instance's container, so a function imports
only the modules it uses.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from aperture.container import instance

HTTP, CLOUDEVENT = "http", "cloudevent"
FINALIZED = "google.cloud.storage.object.v1.finalized"
PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"


@dataclass(frozen=True)
class Function:
    name: str
    trigger: Literal["http", "cloudevent"]  # functions-framework's signature type
    builder: str  # "module:function" that takes the container and returns the handler
    summary: str
    event_type: str | None = None  # for cloudevent functions: what Eventarc delivers


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function(
            "stats", HTTP, "aperture.api.stats:build", "/health and /stats/{image}/{func} over the source bucket (S4)"
        ),
        Function("admin", HTTP, "aperture.api.admin:build", "teams, users and API keys (S5)"),
        Function("upload", HTTP, "aperture.api.uploads:build", "POST /v1/images and upload links (S6)"),
        Function("images", HTTP, "aperture.api.images:build", "list, metadata, download, convert, stats, delete (S8)"),
        Function("search", HTTP, "aperture.api.search:build", "natural-language search and more-like-this (S10)"),
        Function("jobs", HTTP, "aperture.api.jobs:build", "batch jobs: submit, follow, cancel, outputs (S9)"),
        Function("web", HTTP, "aperture.api.web:build", "the web page at /, Swagger UI at /docs (S11)"),
        Function(
            "process",
            CLOUDEVENT,
            "aperture.events.process:build",
            "metadata, labels, embeddings, counters (S7)",
            event_type=FINALIZED,
        ),
        Function(
            "transform",
            CLOUDEVENT,
            "aperture.events.transform:build",
            "runs one batch-job item per Pub/Sub message (S9)",
            event_type=PUBLISHED,
        ),
        Function(
            "repair",
            CLOUDEVENT,
            "aperture.events.repair:build",
            "one repair sweep per tick of the repair topic (Cloud Scheduler, every 15 minutes)",
            event_type=PUBLISHED,
        ),
    )
}


@functools.cache
def handler(name: str) -> Callable[[Any], Any]:
    """The handler of function `name`, built once per instance from the instance's container."""
    module, _, attribute = FUNCTIONS[name].builder.partition(":")
    build = getattr(importlib.import_module(module), attribute)
    return build(instance())
