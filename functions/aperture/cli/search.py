"""`aperture search` and `aperture reindex`: semantic search (spec S10) through the API
(usage in docs/cli.md).

* `search "TEXT"`: `GET /v1/search`, the team's images ranked by similarity to TEXT,
  as a table (score, id, filename, labels).
* `reindex`: after the deployment's vision provider or model changed, images keep the
  embeddings of the old model and drop out of search. This reads the current model
  (`GET /v1/search/model`), pages through the team's images (`GET /v1/images`) and asks
  for a new embedding (`POST /v1/images/{id}/embedding`) of every processed image whose
  `embedding_model` differs, one at a time, with a progress bar on stderr. Images
  already of the current model are skipped, so an interrupted run is resumed by
  running it again.

Both work on the key's own team: the API never shows another team's images.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import click

from aperture.cli import ApiClient, ApiError, CliError, Settings, fields, main, output, pass_settings, segment, table
from aperture.cli._retry import with_retries

PAGE = 200  # images per GET /v1/images page (the API's largest)
RETRIES = 5  # consecutive transient failures (network, 429, 5xx) ridden out per request
FATAL = frozenset({401, 403})  # the key stopped working: no later request would do better
SHOWN_FAILURES = 50


# -- search -----------------------------------------------------------------------------


def decimal(value: float) -> str:
    """A number as the API's min_score takes it: plain decimals, never an exponent."""
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


SEARCH_COLUMNS: list[tuple[str, Any]] = [
    ("score", lambda hit: f"{hit['score']:.3f}" if isinstance(hit.get("score"), (int, float)) else None),
    ("id", "id"),
    ("filename", "filename"),
    ("labels", lambda hit: ", ".join(str(label) for label in hit.get("labels") or []) or None),
]


@main.command("search")
@click.argument("text")
@click.option(
    "--limit", type=click.IntRange(1, 100), metavar="N", help="Most results (1-100) [default: the API's, 20]."
)
@click.option(
    "--min-score",
    type=click.FloatRange(-1.0, 1.0),
    metavar="S",
    help="Lowest score shown, a cosine similarity from -1 to 1 [default: the model's threshold].",
)
@click.option("--format", "image_format", metavar="F", help="Only images of this format (jpeg, png, webp, ...).")
@click.option("--camera", metavar="C", help="Only images taken with this camera (as the image records name it).")
@pass_settings
def search(
    settings: Settings,
    text: str,
    limit: int | None,
    min_score: float | None,
    image_format: str | None,
    camera: str | None,
) -> None:
    """Your team's images ranked by similarity to TEXT (a natural-language description).

    Scores are cosine similarities: 1 is a perfect match. Images scoring below the
    model's threshold are left out (`--min-score -1` shows every image, best first).
    """
    params = {
        "q": text,
        "limit": limit,
        "min_score": None if min_score is None else decimal(min_score),
        "format": image_format,
        "camera": camera,
    }
    answer = settings.client().request("GET", "/v1/search", params=params)
    output(settings, answer, lambda d: table(d["results"], SEARCH_COLUMNS) if d.get("results") else "no results")
    if not settings.json and not answer.get("results") and min_score is None:
        click.echo("note: images below the model's threshold are left out; --min-score lowers it", err=True)


# -- reindex ----------------------------------------------------------------------------


@dataclass
class Plan:
    """The team's images, sorted by what reindexing does with them."""

    model: str
    todo: list[Mapping[str, Any]] = field(default_factory=list)  # processed, of another model (or none)
    current: int = 0  # processed, of the current model
    not_processed: int = 0  # pending or failed: `process` gives them an embedding (or cannot)

    @property
    def images(self) -> int:
        return len(self.todo) + self.current + self.not_processed


def plan(client: ApiClient, model: str) -> Plan:
    """Every image of the key's team, page by page (`GET /v1/images`, newest first)."""
    found = Plan(model)
    cursor = None
    while True:
        page = with_retries(
            functools.partial(client.request, "GET", "/v1/images", params={"limit": PAGE, "cursor": cursor}), RETRIES
        )
        for image in page.get("images") or []:
            if not isinstance(image, dict) or not isinstance(image.get("id"), str):
                continue
            if image.get("status") != "processed":
                found.not_processed += 1
            elif image.get("embedding_model") == model:
                found.current += 1
            else:  # only what a failure line shows, not the whole record (EXIF, labels, ...)
                found.todo.append({"id": image["id"], "filename": image.get("filename")})
        cursor = page.get("next_cursor")
        if not cursor:
            return found


@dataclass
class Outcome:
    reembedded: int = 0
    already_current: int = 0  # re-embedded meanwhile by someone else (another run, a reprocess)
    not_processed: int = 0
    deleted: int = 0  # deleted since it was listed
    failures: list[tuple[Mapping[str, Any], str]] = field(default_factory=list)

    def text(self) -> str:
        return f"{self.reembedded} re-embedded, {len(self.failures)} failed"


def reembed(client: ApiClient, image: Mapping[str, Any], outcome: Outcome) -> None:
    """POST /v1/images/{id}/embedding for one image, its result counted in `outcome`."""
    try:
        answer = with_retries(lambda: client.request("POST", f"/v1/images/{segment(image['id'])}/embedding"), RETRIES)
    except ApiError as exc:
        if exc.status in FATAL:
            raise
        if exc.status == 409:  # no longer processed (reprocessing, failed)
            outcome.not_processed += 1
        elif exc.status == 404:
            outcome.deleted += 1
        else:
            outcome.failures.append((image, exc.format_message()))
        return
    except CliError as exc:
        outcome.failures.append((image, exc.format_message()))
        return
    if isinstance(answer, dict) and answer.get("changed") is False:
        outcome.already_current += 1
    else:
        outcome.reembedded += 1


def summary(found: Plan, outcome: Outcome) -> dict[str, Any]:
    return {
        "embedding_model": found.model,
        "images": found.images,
        "to_reembed": len(found.todo),
        "reembedded": outcome.reembedded,
        "already_current": found.current + outcome.already_current,
        "not_processed": found.not_processed + outcome.not_processed,
        "deleted": outcome.deleted,
        "failed": len(outcome.failures),
        "failures": [{"id": image["id"], "error": error} for image, error in outcome.failures],
    }


SUMMARY_FIELDS = [
    (name, name)
    for name in (
        "embedding_model",
        "images",
        "to_reembed",
        "reembedded",
        "already_current",
        "not_processed",
        "deleted",
        "failed",
    )
]


@main.command("reindex")
@click.option("--dry-run", is_flag=True, help="Only count what would be re-embedded; change nothing.")
@pass_settings
def reindex(settings: Settings, dry_run: bool) -> None:
    """Re-embed your team's images whose embedding is of another model than the current one.

    Run it after the deployment's vision provider or model changed: until then those
    images are left out of search. Images of the current model are skipped, so an
    interrupted run goes on where it stopped when run again; images not processed
    (yet) get their embedding from processing. Exit 1 when any image failed.
    """
    client = settings.client()
    outcome = Outcome()
    try:
        model = with_retries(lambda: client.request("GET", "/v1/search/model"), RETRIES)["embedding_model"]
        click.echo(f"current embedding model: {model}; reading your team's images", err=True)
        found = plan(client, model)
        click.echo(
            f"{found.images} images: {len(found.todo)} to re-embed, {found.current} already current, "
            f"{found.not_processed} not processed",
            err=True,
        )
        if not dry_run and found.todo:
            with click.progressbar(
                length=len(found.todo),
                label="re-embedding",
                file=sys.stderr,
                show_pos=True,
                item_show_func=lambda text: text,
            ) as bar:
                for image in found.todo:
                    reembed(client, image, outcome)
                    bar.update(1, outcome.text())
    except KeyboardInterrupt:
        raise CliError(
            f"stopped after {outcome.reembedded} re-embedded; run `aperture reindex` again to go on "
            "(images already re-embedded are skipped)",
            exit_code=130,
        ) from None
    result = summary(found, outcome)
    if dry_run:
        result["dry_run"] = True
    output(settings, result, lambda d: fields(d, SUMMARY_FIELDS))
    if outcome.failures:
        for image, error in outcome.failures[:SHOWN_FAILURES]:
            click.echo(f"{image['id']} ({image.get('filename') or '-'}): {error}", err=True)
        if len(outcome.failures) > SHOWN_FAILURES:
            click.echo(f"… and {len(outcome.failures) - SHOWN_FAILURES} more (--json lists them all)", err=True)
        raise CliError(
            f"error: {len(outcome.failures)} of {len(found.todo)} images were not re-embedded; "
            "run `aperture reindex` again to retry them (the others are skipped)"
        )
