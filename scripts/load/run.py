"""Load test of the local gateway (issue #19 item 8): mixed traffic at rising concurrency.

Starts its own stack on free ports (or drives a running one: `--url` and `--key`,
with the emulators' addresses in the environment, e.g. `.aperture/local.env`),
seeds images, then runs one stage per concurrency level, each for `--seconds`:
every worker (an asyncio task over one keep-alive aiohttp session) draws a route
from the weighted mix, sends it, and waits for the whole answer before the next.

Routes: `stats_warm` (GET /stats/IMG/FUNC over images already computed),
`stats_cold` (GET /stats over names never asked before: fresh source-bucket
objects uploaded before the stage), `upload` (POST /v1/images, new bytes each
time), `convert` (GET /v1/images/ID.EXT?ops=...), `list` (GET /v1/images),
`search` (GET /v1/search?q=...), `job` (POST /v1/jobs, one image).

Per stage and route: requests, throughput, p50/p95/p99 latency, status counts
and 5xx; the JSON result goes to test-artifacts/load/. Exit status 1 when any
answer was a 5xx or a transport error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import struct
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "functions"), str(REPO / "scripts"), str(REPO / "scripts" / "bench")]

ROUTES = ("stats_warm", "stats_cold", "upload", "convert", "list", "search", "job")
DEFAULT_MIX = "stats_warm=50,stats_cold=4,upload=2,convert=16,list=10,search=12,job=3"
STAT_FUNCS = ("mean", "median", "min", "max", "p99", "p50", "p99.9", "p05")
CONVERSIONS = (
    ("png", "resize:256x256"),
    ("jpg", "resize:50%"),
    ("webp", "rotate:90"),
    ("jpg", "grayscale"),
    ("png", "crop:0,0,200,200"),
    ("jpg", "blur:2|resize:320x240"),
)
QUERIES = ("a person in a space suit", "red flower", "a cat on a sofa", "city at night", "astronaut", "portrait")


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)

    def summary(self, seconds: float) -> dict:
        lat = sorted(self.latencies)
        n = len(lat)

        def pct(q: float) -> float | None:
            return round(lat[min(n - 1, max(0, int(q * n + 0.5) - 1))] * 1000, 2) if n else None

        server = sum(v for k, v in self.statuses.items() if k.isdigit() and int(k) >= 500)
        return {
            "requests": n,
            "throughput": round(n / seconds, 1),
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "statuses": dict(sorted(self.statuses.items())),
            "5xx": server,
            "errors": self.statuses.get("error", 0),
        }


@dataclass
class Target:
    url: str
    key: str
    source_bucket: str
    warm: list[str]  # source-bucket names already computed
    images: list[str]  # team image ids, processed
    cold: list[str] = field(default_factory=list)  # source-bucket names never asked


def jpeg_variant(base: bytes) -> bytes:
    """`base` with a random comment segment after SOI: new bytes (a new id), the same pixels."""
    comment = uuid.uuid4().bytes * 2
    return base[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + base[2:]


# -- the stack and the seed ------------------------------------------------------------------------
def start_stack():
    from devstack.stack import Ports, Stack

    # Source prewarming off: a cold stats request must find nothing computed.
    stack = Stack(Ports.free(), extra_env={"APERTURE_PREWARM_SOURCE": "false"})
    stack.start()
    os.environ.update(stack.client_env())
    from google.cloud import firestore

    from aperture.services import provisioning
    from aperture.storage.identity import IdentityStore
    from aperture.storage.key_issuers import LocalKeyIssuer

    identity = IdentityStore(firestore.Client(project=stack.project))
    _, _, _, secret = provisioning.bootstrap(
        identity, LocalKeyIssuer(), team_id="load", email="load@load.example", role="admin"
    )
    return stack, secret


def upload_source(bucket_name: str, names: list[str], data: bytes) -> None:
    from google.cloud import storage

    bucket = storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "aperture-local")).bucket(bucket_name)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: bucket.blob(n).upload_from_string(data, content_type="image/jpeg"), names))


async def seed(session: aiohttp.ClientSession, url: str, key: str, bucket: str, photo: bytes, small: bytes) -> Target:
    run = uuid.uuid4().hex[:8]
    warm = [f"load/{run}/warm-{i}.jpg" for i in range(4)]
    await asyncio.to_thread(upload_source, bucket, warm, photo)
    for name in warm:
        async with session.get(f"{url}/stats/{name}/mean") as response:
            response.raise_for_status()
    images = []
    for _ in range(8):
        images.append(await post_upload(session, url, key, jpeg_variant(small), expect_ok=True))
    deadline = time.monotonic() + 120
    pending = set(images)
    while pending and time.monotonic() < deadline:
        for image in list(pending):
            async with session.get(f"{url}/v1/images/{image}", headers={"x-api-key": key}) as response:
                if response.status == 200 and (await response.json()).get("status") == "processed":
                    pending.discard(image)
        await asyncio.sleep(0.5)
    if pending:
        raise RuntimeError(f"seeded images not processed within 120 s: {sorted(pending)}")
    return Target(url, key, bucket, warm, images)


async def post_upload(session, url: str, key: str, data: bytes, expect_ok: bool = False) -> str:
    form = aiohttp.FormData()
    form.add_field("files", data, filename=f"{uuid.uuid4().hex[:8]}.jpg", content_type="image/jpeg")
    async with session.post(f"{url}/v1/images", data=form, headers={"x-api-key": key}) as response:
        body = await response.read()
        if expect_ok:
            if response.status not in (200, 201):
                raise RuntimeError(f"seed upload: {response.status} {body[:300]!r}")
            return json.loads(body)["files"][0]["id"]
        return str(response.status)


# -- one request of each route ---------------------------------------------------------------------
class Driver:
    def __init__(self, session: aiohttp.ClientSession, target: Target, small: bytes):
        self.session = session
        self.t = target
        self.small = small
        self.auth = {"x-api-key": target.key}

    async def _get(self, path: str, headers: dict | None = None) -> str:
        async with self.session.get(self.t.url + path, headers=headers) as response:
            await response.read()
            return str(response.status)

    async def stats_warm(self) -> str | None:
        name = random.choice(self.t.warm)
        return await self._get(f"/stats/{name}/{random.choice(STAT_FUNCS)}")

    async def stats_cold(self) -> str | None:
        if not self.t.cold:
            return None  # pool used up: not counted
        return await self._get(f"/stats/{self.t.cold.pop()}/{random.choice(STAT_FUNCS)}")

    async def upload(self) -> str | None:
        return await post_upload(self.session, self.t.url, self.t.key, jpeg_variant(self.small))

    async def convert(self) -> str | None:
        ext, ops = random.choice(CONVERSIONS)
        return await self._get(f"/v1/images/{random.choice(self.t.images)}.{ext}?ops={ops}", self.auth)

    async def list(self) -> str | None:
        return await self._get("/v1/images?limit=20", self.auth)

    async def search(self) -> str | None:
        return await self._get(f"/v1/search?q={random.choice(QUERIES)}&limit=10", self.auth)

    async def job(self) -> str | None:
        body = {
            "images": [{"input": random.choice(self.t.images), "output": f"load/{uuid.uuid4().hex[:12]}.jpg"}],
            "operations": ["resize=50"],
        }
        async with self.session.post(f"{self.t.url}/v1/jobs", json=body, headers=self.auth) as response:
            await response.read()
            return str(response.status)


async def stage(driver: Driver, mix: dict[str, int], concurrency: int, seconds: float) -> dict:
    samples = {route: Samples() for route in mix}
    routes, weights = list(mix), list(mix.values())
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            route = random.choices(routes, weights)[0]
            started = time.perf_counter()
            try:
                status = await getattr(driver, route)()
            except (TimeoutError, aiohttp.ClientError) as exc:
                status = "error"
                print(f"  {route}: {type(exc).__name__}: {exc}", file=sys.stderr)
            if status is not None:
                samples[route].latencies.append(time.perf_counter() - started)
                samples[route].statuses[status] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started  # a little over `seconds`: requests in flight finish
    everything = Samples()
    for s in samples.values():
        everything.latencies += s.latencies
        everything.statuses.update(s.statuses)
    return {
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "routes": {route: s.summary(elapsed) for route, s in samples.items() if s.latencies},
        "total": everything.summary(elapsed),
    }


def print_stage(result: dict) -> None:
    print(f"\n-- concurrency {result['concurrency']} ({result['seconds']} s)")
    print(f"{'route':<11} {'req':>6} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'5xx':>4}  statuses")
    for route, s in [*result["routes"].items(), ("total", result["total"])]:
        statuses = " ".join(f"{k}:{v}" for k, v in s["statuses"].items())
        print(
            f"{route:<11} {s['requests']:>6} {s['throughput']:>7} {s['p50_ms']:>8} {s['p95_ms']:>8} "
            f"{s['p99_ms']:>8} {s['5xx']:>4}  {statuses}"
        )


def parse_mix(text: str) -> dict[str, int]:
    mix = {}
    for item in text.split(","):
        route, _, weight = item.partition("=")
        if route.strip() not in ROUTES:
            raise SystemExit(f"unknown route {route!r}: use {', '.join(ROUTES)}")
        if int(weight) > 0:
            mix[route.strip()] = int(weight)
    return mix


async def run(args: argparse.Namespace, url: str, key: str, bucket: str) -> dict:
    from benchlib import photo_jpeg

    photo = photo_jpeg(1, seed=19)  # the 1 MP photo of the stats targets
    small = photo_jpeg(0.3, seed=20, quality=85)
    mix = parse_mix(args.mix)
    stages = [int(c) for c in args.stages.split(",")]
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        target = await seed(session, url, key, bucket, photo, small)
        driver = Driver(session, target, small)
        results = []
        for concurrency in stages:
            if "stats_cold" in mix:
                # Enough never-asked names for the stage (uploaded first, outside the timing).
                cold = [f"load/{uuid.uuid4().hex[:8]}/cold-{i}.jpg" for i in range(args.cold_pool)]
                await asyncio.to_thread(upload_source, bucket, cold, photo)
                target.cold = cold
                await asyncio.sleep(2)  # let the uploads' finalize events go by
            result = await stage(driver, mix, concurrency, args.seconds)
            result["cold_pool_left"] = len(target.cold)
            print_stage(result)
            results.append(result)
            await asyncio.sleep(args.pause)
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "seconds_per_stage": args.seconds,
        "mix": mix,
        "stages": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running gateway (else a stack of our own on free ports)")
    parser.add_argument("--key", help="an API key of that stack (with --url)")
    parser.add_argument("--source-bucket", default=os.environ.get("SOURCE_BUCKET", "aperture-source"))
    parser.add_argument("--seconds", type=float, default=20.0, help="per stage")
    parser.add_argument("--stages", default="1,4,16,32", help="concurrency of each stage")
    parser.add_argument("--mix", default=DEFAULT_MIX, help=f"route=weight,... (default {DEFAULT_MIX})")
    parser.add_argument("--cold-pool", type=int, default=400, help="fresh source objects per stage")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between stages")
    parser.add_argument("--out", type=Path, default=REPO / "test-artifacts" / "load")
    args = parser.parse_args(argv)
    if bool(args.url) != bool(args.key):
        parser.error("--url and --key go together")
    stack = None
    if args.url:
        url, key = args.url.rstrip("/"), args.key
    else:
        print("starting a local stack on free ports...", flush=True)
        stack, key = start_stack()
        url = stack.gateway_url
    try:
        result = asyncio.run(run(args, url, key, args.source_bucket))
    finally:
        if stack is not None:
            stack.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    bad = sum(s["total"]["5xx"] + s["total"]["errors"] for s in result["stages"])
    print(f"\nresult: {path}; 5xx and transport errors over all stages: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
