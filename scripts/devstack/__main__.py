"""`python -m devstack run`: the whole local stack until Ctrl-C (what `make run` does)."""

from __future__ import annotations

import argparse
import signal
import sys
import time

from devstack.stack import REPAIR_EVERY, REPAIR_TOPIC, REPO, Ports, Stack

ENV_FILE = REPO / ".aperture" / "local.env"


def run(workers: int = 2, repair_every: float = REPAIR_EVERY) -> int:
    stack = Stack(
        Ports.fixed(),
        log_dir=REPO / ".aperture" / "logs",
        transform_workers=workers,
        repair_every=repair_every or None,
    )
    # The signals received. Not a threading.Event: its set() takes a lock, and a second
    # signal arriving inside the first one's handler (a supervisor's TERM to the whole
    # process group, e.g. `timeout make run`, reaches this process twice) deadlocked on it.
    stopping: list[int] = []

    def on_signal(signum, frame):  # Ctrl-C or a TERM from a supervisor
        stopping.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print("starting the Aperture local stack (emulators take ~10 s)…", flush=True)
    try:
        stack.start()
        from google.cloud import storage

        from devstack.seed import seed_source_bucket

        seeded = seed_source_bucket(storage.Client(project=stack.project), stack.source_bucket)
        extra = _demo_credentials(stack)
        stack.write_env_file(ENV_FILE, extra)
        _banner(stack, seeded, extra)
        while not stopping:
            time.sleep(0.5)  # a signal cuts it short
    finally:
        print("\nstopping the local stack…", flush=True)
        stack.stop()
    return 0


def _demo_credentials(stack: Stack) -> dict[str, str]:
    """A demo team with an admin and their key (the stack starts with empty Firestore)."""
    from google.cloud import firestore

    from aperture.services import provisioning
    from aperture.storage.identity import IdentityStore
    from aperture.storage.key_issuers import LocalKeyIssuer

    identity = IdentityStore(firestore.Client(project=stack.project))
    team, user, key, secret = provisioning.bootstrap(
        identity, LocalKeyIssuer(), team_id="demo", email="admin@demo.example", role="admin"
    )
    return {"DEMO_API_KEY": secret, "DEMO_TEAM": team.team_id}


def _banner(stack: Stack, seeded: list[str], extra: dict[str, str]) -> None:
    url = stack.gateway_url
    lines = [
        "",
        f"Aperture is running at {url}",
        f"  try: curl {url}/health",
        f"       curl {url}/stats/{seeded[0]}/mean",
        f"       curl -H 'Accept: application/json' '{url}/stats/{seeded[0]}/p99.9?channel=r'",
        f"  source bucket {stack.source_bucket}: {', '.join(seeded)}",
        f"  environment for other shells: source {ENV_FILE.relative_to(REPO)}",
        f"  logs: {stack.log_dir.relative_to(REPO)}/",
    ]
    if "DEMO_API_KEY" in extra:
        lines.append(f"  demo API key (x-api-key): {extra['DEMO_API_KEY']}")
    timer = f"every {stack.repair_every:g} s" if stack.repair_every else "by hand only"
    lines.append(
        f"  repair sweep {timer}; one now: python -m devstack.scheduler --project {stack.project} "
        f"--topic {REPAIR_TOPIC} --once"
    )
    lines.append("Ctrl-C stops everything.")
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack")
    parser.add_argument("command", choices=["run"])
    parser.add_argument("--workers", type=int, default=2, help="processes of the transform function (job items)")
    parser.add_argument(
        "--repair-every",
        type=float,
        default=REPAIR_EVERY,
        metavar="SECONDS",
        help=f"seconds between the repair sweep's ticks (default {REPAIR_EVERY:g}, as in the cloud; 0: no timer)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.repair_every < 0:
        parser.error("--repair-every must be 0 (no timer) or more")
    return run(args.workers, args.repair_every)


if __name__ == "__main__":
    sys.exit(main())
