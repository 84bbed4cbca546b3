"""The `jobs` function (spec S9): submit a batch job, follow it, list, cancel, download outputs.

* `POST /v1/jobs` -> 202 {job_id, status_url}
* `GET /v1/jobs` (the team's jobs, newest first, `limit`, `cursor`)
* `GET /v1/jobs/{id}` (status, counts, per-item state, errors and output links)
* `DELETE /v1/jobs/{id}` (cancels the items not started)
* `GET /v1/jobs/{id}/outputs/{name}` (one output's bytes)

Another team's job answers exactly like a missing one (404).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import flask

from aperture.api.auth import keyed
from aperture.api.image_links import ImageLinks, job_output
from aperture.api.json_io import empty_response, json_response, read_json_value
from aperture.api.routing import Router
from aperture.domain.errors import ApiError
from aperture.domain.jobs import JOB_ID, JobItem
from aperture.domain.records import Principal
from aperture.services.jobs import JobService, JobView

if TYPE_CHECKING:
    from aperture.container import Container


def build(container: Container) -> Callable[[flask.Request], flask.Response]:
    """The `jobs` function's handler, over the container's services."""
    config = container.config
    links = ImageLinks(container.links, config.public_url)
    api = JobsApi(container.job_service, max_json_bytes=config.max_job_json_bytes, links=links)
    return keyed(container.access, api.router, container.links, job_output)


class JobsApi:
    def __init__(self, jobs: JobService, *, max_json_bytes: int, links: ImageLinks):
        self.jobs = jobs
        self.max_json_bytes = max_json_bytes
        self.links = links
        self.router = Router(
            [
                ("/v1/jobs", ("POST",), self.submit),
                ("/v1/jobs", ("GET",), self.list_jobs),
                ("/v1/jobs/<job_id>", ("GET",), self.get_job),
                ("/v1/jobs/<job_id>", ("DELETE",), self.cancel),
                ("/v1/jobs/<job_id>/outputs/<path:name>", ("GET",), self.output),
            ]
        )

    def _base(self, request: flask.Request) -> str:
        return self.links.base(request)

    def submit(self, request: flask.Request, principal: Principal) -> flask.Response:
        job = self.jobs.submit(principal, self._body(request))
        status_url = f"{self._base(request)}/v1/jobs/{job.job_id}"
        return json_response(
            {"job_id": job.job_id, "status_url": status_url, "status": "queued", "total": job.total},
            202,
            {"Location": status_url},
        )

    def list_jobs(self, request: flask.Request, principal: Principal) -> flask.Response:
        unknown = set(request.args) - {"limit", "cursor"}
        if unknown:
            raise ApiError(400, f"unknown parameter(s): {', '.join(sorted(unknown))}")
        raw = request.args.get("limit", "20")
        if not re.fullmatch(r"\d{1,4}", raw):
            raise ApiError(400, "limit must be an integer from 1 to 100")
        start_after = request.args.get("cursor") or None
        if start_after is not None and not JOB_ID.fullmatch(start_after):  # never a Firestore path ("a/b", "__x__")
            raise ApiError(400, "cursor is not one of your jobs; start again without a cursor")
        page, cursor = self.jobs.list(principal, limit=int(raw), start_after=start_after)
        return json_response({"jobs": [self._view(request, v) for v in page], "next_cursor": cursor})

    def get_job(self, request: flask.Request, principal: Principal, job_id: str) -> flask.Response:
        return json_response(self._view(request, self.jobs.get(principal, job_id)))

    def cancel(self, request: flask.Request, principal: Principal, job_id: str) -> flask.Response:
        return json_response(self._view(request, self.jobs.cancel(principal, job_id)))

    def output(self, request: flask.Request, principal: Principal, job_id: str, name: str) -> flask.Response:
        info, body = self.jobs.output(principal, job_id, name)
        if body.url is not None:  # over API Gateway's response limit: the client follows the link
            return empty_response(307, {"Location": body.url, "Cache-Control": "private, no-store"})
        return flask.Response(
            body.data,
            status=200,
            mimetype=info.content_type or "application/octet-stream",
            headers={
                "Cache-Control": "private, max-age=31536000, immutable",  # outputs are written once
                "Content-Disposition": f'attachment; filename="{name.rsplit("/", 1)[-1]}"',
                "X-Content-Type-Options": "nosniff",
            },
        )

    def _body(self, request: flask.Request) -> Any:
        return read_json_value(request, max_bytes=self.max_json_bytes, what="the job")

    def _view(self, request: flask.Request, view: JobView) -> dict[str, Any]:
        job, counts = view.job, view.counts
        root = self._base(request)
        base = f"{root}/v1/jobs/{job.job_id}"
        out: dict[str, Any] = {
            "job_id": job.job_id,
            "status": counts.status().value,
            "total": job.total,
            "counts": {
                "queued": counts.queued,
                "running": counts.running,
                "done": counts.done,
                "failed": counts.failed,
                "cancelled": counts.cancelled,
            },
            "operations": list(job.operations),
            "pipeline": job.pipeline,
            "created_at": job.created_at,
            "cancelled": job.cancelled,
            "status_url": base,
        }
        if view.items is not None:
            expires = self.links.links.expiry()

            def output_url(name: str) -> str:
                path = f"/v1/jobs/{job.job_id}/outputs/{name}"
                return self.links.url(root, path, job.team, [], expires)

            out["items"] = [_item_view(output_url, item) for item in view.items]
        return out


def _item_view(output_url: Callable[[str], str], item: JobItem) -> dict[str, Any]:
    view: dict[str, Any] = {
        "index": item.index,
        "input": item.input,
        "image_id": item.image_id,
        "output": item.output,
        "state": item.state.value,
        "attempts": item.attempts,
        "started_at": item.started_at,
        "finished_at": item.finished_at,
        # Signed: the link opens without a key, in a browser or any download tool.
        "outputs": [{"name": name, "url": output_url(name)} for name in item.outputs],
    }
    if item.error:
        view["error"] = item.error
    return view
