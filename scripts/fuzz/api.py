"""Fuzz the HTTP API with schemathesis, from the OpenAPI document (issue #18).

Starts its own local stack (as tests/integration does), makes an owner key
(so the admin routes are reachable), uploads one image and submits one job
so their ids exist, and runs schemathesis' phases (examples, coverage,
fuzzing; stateful with --stateful) against the gateway:

    python scripts/fuzz/api.py --examples 200          # cases per operation
    python scripts/fuzz/api.py --seconds 600           # or a time budget
    python scripts/fuzz/api.py --url URL --key KEY     # against a running stack

Checks: no server error (5xx), every status code and content type declared in
the document, a 405 has an `Allow` header listing the declared methods
(`unsupported_method`, `allow_header_conformance`). Prints the cases run and
the findings (deduplicated by schemathesis); exits 1 when there are findings.

tests/integration/test_api_fuzz.py runs the same thing, bounded, in `make test`.

One thing the run accepts (a schemathesis hook, `register_hooks`): a 204, 304
or 307 without Content-Type (no body, nothing to type). Control characters in
path segments are sent too: functions-framework's own router cannot carry them,
and main.py answers its 404 with the JSON error body.

The document is fuzzed as plain Swagger 2.0 (`fuzz_document`): API Gateway's
`{name=**}` becomes `{name}`, the web function's routes (static files, another
contract) are left out, and the ids made above are added as `x-example` of
their path parameters, with `x-links` from an upload and a job submission to
the operations that take their ids (for the stateful phase). None of that
touches the deployed document.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
OPENAPI = REPO / "functions" / "aperture" / "web" / "openapi.yaml"
# Static files of the web function: another contract (tests/unit/api/test_web.py).
WEB_PATHS = {"/app", "/app/{file}", "/docs", "/docs/{file}", "/openapi.json"}
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "unsupported_method",
    "allow_header_conformance",
)
PHASES = ("examples", "coverage", "fuzzing")
HOOKS_MODULE = "fuzz.api"

# Ids the responses of an upload and of a job submission hand out, and the
# operations' path parameters that take them (schemathesis' x-links, Swagger 2.0).
IMAGE_LINK = {"parameters": {"image": "$response.body#/files/0/id"}}
JOB_LINK = {"parameters": {"job_id": "$response.body#/job_id"}}
IMAGE_OPERATIONS = (
    "getImage",
    "deleteImage",
    "downloadOriginal",
    "createImageLink",
    "teamImageStats",
    "similarImages",
    "reembedImage",
)
JOB_OPERATIONS = ("getJob", "cancelJob")


def register_hooks() -> None:
    """What schemathesis, started by `run`, loads from this module (SCHEMATHESIS_HOOKS)."""
    import schemathesis

    @schemathesis.hook
    def filter_failure(context, failure, case, response) -> bool:
        bodiless = response.status_code in (204, 304, 307) and not response.content
        if bodiless and type(failure).__name__ == "MissingContentType":
            return False
        return True


def fuzz_document(text: str | None = None, examples: dict[str, str] | None = None) -> dict:
    """The OpenAPI document as schemathesis fuzzes it (see the module's doc)."""
    text = OPENAPI.read_text() if text is None else text
    text = text.replace("${project}", "aperture-local").replace("${region}", "local")
    text = re.sub(r"\{(\w+)=\*\*\}", r"{\1}", text)
    spec = yaml.safe_load(text)
    spec["paths"] = {p: item for p, item in spec["paths"].items() if p not in WEB_PATHS}
    spec.pop("host", None)
    spec["schemes"] = ["http"]
    examples = examples or {}
    by_id = {}
    for item in spec["paths"].values():
        for op in item.values():
            if isinstance(op, dict) and "operationId" in op:
                by_id[op["operationId"]] = op
                for param in op.get("parameters", []):
                    if param.get("in") == "path" and param["name"] in examples:
                        param["x-example"] = examples[param["name"]]
    links = {}
    for target in IMAGE_OPERATIONS:
        links[f"upload_{target}"] = {"operationId": target, **copy.deepcopy(IMAGE_LINK)}
    by_id["uploadImages"]["responses"]["201"]["x-links"] = links
    by_id["submitJob"]["responses"]["202"]["x-links"] = {
        f"job_{target}": {"operationId": target, **copy.deepcopy(JOB_LINK)} for target in JOB_OPERATIONS
    }
    return spec


def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), (200, 80, 20)).save(buffer, "PNG")
    return buffer.getvalue()


def seed(base_url: str, key: str) -> dict[str, str]:
    """An image and a job of the key's team, so generated requests can name them."""
    headers = {"x-api-key": key}
    upload = requests.post(
        f"{base_url}/v1/images", headers=headers, files=[("files", ("seed.png", _png(), "image/png"))], timeout=60
    )
    upload.raise_for_status()
    image = upload.json()["files"][0]["id"]
    job = requests.post(
        f"{base_url}/v1/jobs",
        headers=headers,
        json={"images": [{"input": image, "output": "seed/out.png"}], "operations": ["resize=50"]},
        timeout=60,
    )
    job.raise_for_status()
    return {"image": image, "job_id": job.json()["job_id"], "name": "seed/out.png"}


def owner_key(project: str) -> str:
    """A fresh owner (its own team) made straight in Firestore, as `aperture bootstrap` does."""
    from google.cloud import firestore

    from aperture.services import provisioning
    from aperture.storage.identity import IdentityStore
    from aperture.storage.key_issuers import LocalKeyIssuer

    team = f"fuzz-{uuid.uuid4().hex[:8]}"
    *_, secret = provisioning.bootstrap(
        IdentityStore(firestore.Client(project=project)),
        LocalKeyIssuer(),
        team_id=team,
        email=f"owner@{team}.example",
        role="owner",
    )
    return secret


def command(
    document: Path,
    base_url: str,
    key: str,
    *,
    examples: int | None = None,
    seconds: float | None = None,
    phases: tuple[str, ...] = PHASES,
    seed_value: int | None = None,
    workers: int = 1,
) -> list[str]:
    """The `schemathesis run` command line."""
    argv = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        str(document),
        "--url",
        base_url,
        "--header",
        f"x-api-key: {key}",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        ",".join(phases),
        "--workers",
        str(workers),
        "--request-timeout",
        "60",
        "--max-redirects",
        "0",
        "--suppress-health-check",
        "all",
        "--generation-database",
        "none",
        "--no-color",
    ]
    if examples is not None:
        argv += ["--max-examples", str(examples)]
    if seconds is not None:
        argv += ["--max-time", str(max(1, int(seconds)))]
    if seed_value is not None:
        argv += ["--seed", str(seed_value)]
    return argv


def run(
    base_url: str,
    key: str,
    *,
    examples: int | None = None,
    seconds: float | None = None,
    phases: tuple[str, ...] = PHASES,
    seed_value: int | None = None,
    workers: int = 1,
    echo: bool = True,
) -> subprocess.CompletedProcess:
    """Seed, write the fuzzed document, run schemathesis; its output and exit code."""
    ids = seed(base_url, key)
    with tempfile.TemporaryDirectory(prefix="aperture-fuzz-") as tmp:
        document = Path(tmp) / "openapi.json"
        document.write_text(json.dumps(fuzz_document(examples=ids)))
        argv = command(
            document,
            base_url,
            key,
            examples=examples,
            seconds=seconds,
            phases=phases,
            seed_value=seed_value,
            workers=workers,
        )
        path = os.pathsep.join(
            filter(None, [str(REPO / "scripts"), str(REPO / "functions"), os.environ.get("PYTHONPATH")])
        )
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, "SCHEMATHESIS_HOOKS": HOOKS_MODULE}
        if echo:
            return subprocess.run(argv, env=env, cwd=tmp, check=False, text=True)
        return subprocess.run(argv, env=env, cwd=tmp, check=False, text=True, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=None, help="cases per operation and phase (default 100)")
    parser.add_argument("--seconds", type=float, default=None, help="time budget of the whole run")
    parser.add_argument("--seed", type=int, default=None, help="random seed (to replay a run)")
    # One worker: schemathesis' threads race in hypothesis' lambda descriptions
    # on Python 3.11 ("AST constructor recursion depth mismatch", a runtime error).
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--stateful", action="store_true", help="also chain calls through the x-links")
    parser.add_argument("--url", help="a running stack's gateway (with --key) instead of a new stack")
    parser.add_argument("--key", help="an owner key of that stack")
    args = parser.parse_args(argv)
    examples = args.examples if args.examples or args.seconds else 100
    phases = PHASES + (("stateful",) if args.stateful else ())
    options = {"examples": examples, "seconds": args.seconds, "phases": phases, "seed_value": args.seed}
    started = time.monotonic()
    if args.url:
        if not args.key:
            parser.error("--url needs --key")
        result = run(args.url, args.key, workers=args.workers, **options)
    else:
        from devstack.stack import Ports, Stack

        with Stack(Ports.free()) as stack:
            os.environ.update(stack.client_env())
            print(f"local stack up at {stack.gateway_url}", flush=True)
            result = run(stack.gateway_url, owner_key(stack.project), workers=args.workers, **options)
    print(f"fuzzing took {time.monotonic() - started:.0f} s; schemathesis exit code {result.returncode}")
    return 0 if result.returncode == 0 else 1


if __name__ == HOOKS_MODULE and os.environ.get("SCHEMATHESIS_HOOKS") == HOOKS_MODULE:
    register_hooks()  # imported by the schemathesis that `run` started

if __name__ == "__main__":
    sys.exit(main())
