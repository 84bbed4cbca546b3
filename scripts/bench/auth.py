"""Benchmark of authentication (issue: teams, users, keys).

Target (issue #19, item 6): the key check and team mapping add at most 1 ms at
the median to a request on the local stack. The same handler is served through
the same gateway twice, in the same run: once on an operation without security
(the baseline), once on one that needs `x-api-key` (the gateway's edge check,
then the function's key check through its per-instance key cache, team mapping
and audit). `APERTURE_KEY_CACHE_SECONDS=0` in the environment measures the
check without the cache (a Firestore read per request).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import requests
import yaml

from benchlib import local_stack, median_ms, timed, verdict
from devstack.processes import free_port, http_ok, port_open, spawn, wait_until
from devstack.stack import OPENAPI

REQUESTS = 400
TARGET_MS = 1.0


def bench_spec(base: dict) -> dict:
    backend = {
        "address": "https://${region}-${project}.cloudfunctions.net/benchauth",
        "path_translation": "APPEND_PATH_TO_ADDRESS",
    }
    op = {"responses": {"200": {"description": "OK"}}, "x-google-backend": backend}
    return {
        **{k: v for k, v in base.items() if k != "paths"},
        "x-google-backend": backend,
        "paths": {
            "/open": {"get": {**op, "operationId": "open"}},
            "/guarded": {"get": {**op, "operationId": "guarded", "security": [{"api_key": []}]}},
        },
    }


def main() -> int:
    with local_stack() as stack:
        from google.cloud import firestore

        from aperture.config import Config
        from aperture.services import provisioning
        from aperture.storage.identity import IdentityStore
        from aperture.storage.key_issuers import LocalKeyIssuer

        *_, key = provisioning.bootstrap(
            IdentityStore(firestore.Client(project=stack.project)),
            LocalKeyIssuer(),
            team_id="bench",
            email="bench@bench.example",
            role="member",
        )
        target_port, gateway_port = free_port(), free_port()
        spec_path = Path(tempfile.mkdtemp()) / "bench-openapi.yaml"
        spec_path.write_text(yaml.safe_dump(bench_spec(yaml.safe_load(OPENAPI.read_text()))))
        target = spawn(
            "benchauth",
            [
                sys.executable,
                "-m",
                "functions_framework",
                "--target=target",
                f"--source={Path(__file__).with_name('_auth_target.py')}",
                "--host=127.0.0.1",
                f"--port={target_port}",
            ],
            env=stack.function_env(),
            log_dir=stack.log_dir,
        )
        gateway = spawn(
            "benchgateway",
            [
                sys.executable,
                "-m",
                "devstack.gateway",
                f"--port={gateway_port}",
                f"--spec={spec_path}",
                f"--project={stack.project}",
                f"--backend=benchauth=http://127.0.0.1:{target_port}",
            ],
            env=stack.function_env(),
            log_dir=stack.log_dir,
        )
        stack.children += [target, gateway]
        wait_until(port_open(target_port), child=target, timeout=60, what="bench target")
        wait_until(http_ok(f"http://127.0.0.1:{gateway_port}/open"), child=gateway, timeout=60, what="bench gateway")

        session = requests.Session()
        base = f"http://127.0.0.1:{gateway_port}"

        def get(path: str, headers=None):
            response = session.get(base + path, headers=headers)
            assert response.status_code == 200, response.text

        for _ in range(30):  # warm both paths (imports, clients, connections)
            get("/open")
            get("/guarded", {"x-api-key": key})
        # Interleave so that drift on a busy machine hits both sides alike.
        open_times, guarded_times = [], []
        for _ in range(REQUESTS):
            open_times += timed(lambda: get("/open"), 1)
            guarded_times += timed(lambda: get("/guarded", {"x-api-key": key}), 1)
        without, with_auth = median_ms(open_times), median_ms(guarded_times)
        added = with_auth - without
        cache_seconds = Config.from_env(stack.function_env()).key_cache_seconds
        print(__doc__.strip().splitlines()[0])
        print(
            f"median over {REQUESTS} requests: without auth {without:.2f} ms, with auth {with_auth:.2f} ms "
            f"(ratio {with_auth / without:.2f}x; key cache {cache_seconds} s)"
        )
        print(f"median auth overhead: {added:.2f} ms (target <= {TARGET_MS:g} ms) {verdict(added <= TARGET_MS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
