"""Start and stop the whole local stack; used by `make run` and by the tests."""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from aperture.functions import FUNCTIONS as REGISTRY
from devstack import prereqs
from devstack.processes import Child, free_port, http_ok, port_open, spawn, wait_until

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS_DIR = REPO / "functions"
OPENAPI = REPO / "infra" / "openapi.yaml"

# Every deployed function: name -> functions-framework signature type, from the registry.
FUNCTIONS = {f.name: f.trigger for f in REGISTRY.values()}
# Topic fake-gcs-server publishes object notifications to (as a GCS
# notification config would), and the bridge's subscription to it.
NOTIFICATIONS_TOPIC = "gcs-notifications"
NOTIFICATIONS_SUBSCRIPTION = "gcs-notifications-bridge"
# Batch jobs (S9): the emulator pushes each item to the `transform` function, as
# the push subscription of infra/pubsub.tf does in the cloud; after MAX_DELIVERIES failed pushes the item goes
# to the dead-letter topic, whose subscription pushes it to `transform` again
# (which then marks it failed).
JOBS_TOPIC = "aperture-jobs"
JOBS_DEAD_LETTER_TOPIC = "aperture-jobs-dead-letter"
JOBS_SUBSCRIPTION = "aperture-jobs-transform"
JOBS_DEAD_LETTER_SUBSCRIPTION = "aperture-jobs-dead-letter-transform"
MAX_DELIVERIES = 5
# The repair sweep: the timer child (devstack.scheduler, as Cloud Scheduler in the
# cloud) publishes a tick to the repair topic every `Stack.repair_every` seconds and
# the emulator pushes it to the `repair` function, dead letters too (which it logs).
REPAIR_TOPIC = "aperture-repair"
REPAIR_DEAD_LETTER_TOPIC = "aperture-repair-dead-letter"
REPAIR_SUBSCRIPTION = "aperture-repair-repair"
REPAIR_DEAD_LETTER_SUBSCRIPTION = "aperture-repair-dead-letter-repair"
REPAIR_EVERY = 900.0  # seconds: infra/scheduler.tf's */15
# Team images processing gave up on, held for an operator by a pull subscription.
PROCESS_DEAD_LETTER_TOPIC = "aperture-process-dead-letter"
PROCESS_DEAD_LETTER_HOLD = "aperture-process-dead-letter-hold"


@dataclass(frozen=True)
class Queue:
    """A work topic pushed to a function, with its dead-letter topic pushed to the same function
    (infra/pubsub.tf's pair of push subscriptions)."""

    topic: str
    dead_letter_topic: str
    subscription: str
    dead_letter_subscription: str
    function: str
    ack_deadline: int  # seconds: the function's timeout in infra/main.tf (at most 600)


QUEUES = (
    Queue(JOBS_TOPIC, JOBS_DEAD_LETTER_TOPIC, JOBS_SUBSCRIPTION, JOBS_DEAD_LETTER_SUBSCRIPTION, "transform", 120),
    Queue(REPAIR_TOPIC, REPAIR_DEAD_LETTER_TOPIC, REPAIR_SUBSCRIPTION, REPAIR_DEAD_LETTER_SUBSCRIPTION, "repair", 540),
)


@dataclass
class Ports:
    gateway: int
    firestore: int
    pubsub: int
    storage: int
    functions: dict[str, int]

    @classmethod
    def fixed(cls) -> Ports:
        """The well-known ports of `make run` (override with APERTURE_GATEWAY_PORT)."""
        base = 8090
        return cls(
            gateway=int(os.environ.get("APERTURE_GATEWAY_PORT", 8080)),
            firestore=8681,
            pubsub=8682,
            storage=4443,
            functions={name: base + i for i, name in enumerate(FUNCTIONS)},
        )

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port(), {n: free_port() for n in FUNCTIONS})


@dataclass
class Stack:
    ports: Ports
    project: str = "aperture-local"
    source_bucket: str = "aperture-source"
    uploads_bucket: str = "aperture-uploads"
    derived_bucket: str = "aperture-derived"
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="aperture-logs-")))
    extra_env: dict[str, str] = field(default_factory=dict)
    # False: no event bridge, so bucket writes are not processed (benchmarks of
    # the request path alone, without processing competing for the CPU).
    events: bool = True
    # Processes of the `transform` function (gunicorn workers), which run
    # batch-job items in parallel as Cloud Functions instances would. Each keeps
    # functions-framework's default threads: with one thread, a process stalled
    # ~2 s between the emulator's pushes (measured; docs/decisions.md).
    transform_workers: int = 2
    # Seconds between the timer's ticks to the repair topic (each runs one repair
    # sweep); None: no timer (a tick can still be published by hand).
    repair_every: float | None = REPAIR_EVERY
    children: list[Child] = field(default_factory=list)
    # Signs the image links the functions hand out (Secret Manager in the
    # cloud): one per stack, shared by every function, never given to clients.
    link_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48), repr=False)
    # How each part was started (argv, env), so that `start_part` starts it again the same way.
    _specs: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict, repr=False)

    # addresses ---------------------------------------------------------------
    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    def function_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports.functions[name]}"

    def client_env(self) -> dict[str, str]:
        """What a client (test, CLI, another shell) needs to reach this stack."""
        return {
            "GOOGLE_CLOUD_PROJECT": self.project,
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{self.ports.firestore}",
            "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{self.ports.pubsub}",
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.ports.storage}",
            "GATEWAY_URL": self.gateway_url,
            "SOURCE_BUCKET": self.source_bucket,
            "UPLOADS_BUCKET": self.uploads_bucket,
            "DERIVED_BUCKET": self.derived_bucket,
        }

    def function_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.client_env())
        env.update(
            {
                "APERTURE_SOURCE_BUCKET": self.source_bucket,
                "APERTURE_UPLOADS_BUCKET": self.uploads_bucket,
                "APERTURE_DERIVED_BUCKET": self.derived_bucket,
                "APERTURE_JOBS_TOPIC": JOBS_TOPIC,
                "APERTURE_PROCESS_DEAD_LETTER_TOPIC": PROCESS_DEAD_LETTER_TOPIC,
                "APERTURE_PUBLIC_URL": self.gateway_url,
                "APERTURE_STORAGE_PUBLIC_URL": f"http://127.0.0.1:{self.ports.storage}",
                "APERTURE_LINK_SECRET": self.link_secret,
                "PYTHONPATH": os.pathsep.join([str(FUNCTIONS_DIR), str(REPO / "scripts")]),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    # lifecycle ---------------------------------------------------------------
    def start(self) -> Stack:
        missing = prereqs.problems()
        if missing:
            raise RuntimeError("cannot start the local stack:\n  " + "\n  ".join(missing))
        try:
            self._start_emulators()
            self._create_resources()
            self._start_functions()
            self._subscribe_workers()
            self._start_gateway_and_bridge()
            self._start_scheduler()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        env = env or self.function_env()
        child = spawn(name, argv, env=env, log_dir=self.log_dir, cwd=REPO)
        self.children.append(child)
        self._specs[name] = (list(argv), dict(env))
        return child

    def _start_emulators(self) -> None:
        gcloud = shutil.which("gcloud")
        fs = self._spawn(
            "firestore",
            [gcloud, "emulators", "firestore", "start", f"--host-port=127.0.0.1:{self.ports.firestore}", "--quiet"],
        )
        ps = self._spawn(
            "pubsub",
            [
                gcloud,
                "beta",
                "emulators",
                "pubsub",
                "start",
                f"--host-port=127.0.0.1:{self.ports.pubsub}",
                f"--project={self.project}",
                "--quiet",
            ],
        )
        self._wait_ready("pubsub", ps)
        self._wait_ready("firestore", fs)

    def _create_resources(self) -> None:
        self._create_topics()
        # fake-gcs-server publishes to the topic but does not create it: start it after.
        self._start_storage()

    def _create_topics(self) -> None:
        os.environ.update(self.client_env())
        from google.api_core import exceptions as gexc
        from google.cloud import pubsub_v1

        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        topic = publisher.topic_path(self.project, NOTIFICATIONS_TOPIC)
        subscription = subscriber.subscription_path(self.project, NOTIFICATIONS_SUBSCRIPTION)
        held = publisher.topic_path(self.project, PROCESS_DEAD_LETTER_TOPIC)
        hold = subscriber.subscription_path(self.project, PROCESS_DEAD_LETTER_HOLD)
        creates = [
            lambda: publisher.create_topic(name=topic),
            lambda: subscriber.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=60),
            lambda: publisher.create_topic(name=held),
            lambda: subscriber.create_subscription(name=hold, topic=held, ack_deadline_seconds=60),
        ]
        for queue in QUEUES:
            for name in (queue.topic, queue.dead_letter_topic):
                creates.append(lambda name=name: publisher.create_topic(name=publisher.topic_path(self.project, name)))
        for create in creates:
            try:
                create()
            except gexc.AlreadyExists:
                pass

    def _start_storage(self) -> None:
        env = self.function_env()
        gcs = self._spawn(
            "storage",
            [
                str(prereqs.fake_gcs_binary()),
                "-scheme",
                "http",
                "-backend",
                "memory",
                "-host",
                "127.0.0.1",
                "-port",
                str(self.ports.storage),
                "-public-host",
                f"127.0.0.1:{self.ports.storage}",
                "-external-url",
                f"http://127.0.0.1:{self.ports.storage}",
                "-event.pubsub-project-id",
                self.project,
                "-event.pubsub-topic",
                NOTIFICATIONS_TOPIC,
                "-event.list",
                "finalize,delete",
                "-log-level",
                "warn",
            ],
            env=env,
        )
        self._wait_ready("storage", gcs)
        self._create_buckets()

    def _create_buckets(self) -> None:
        from google.api_core import exceptions as gexc
        from google.cloud import storage

        client = storage.Client(project=self.project)
        for bucket in (self.source_bucket, self.uploads_bucket, self.derived_bucket):
            try:
                client.create_bucket(bucket)
            except gexc.Conflict:
                pass

    def _start_functions(self) -> None:
        started = []
        for name, signature in FUNCTIONS.items():
            argv = [
                sys.executable,
                "-m",
                "functions_framework",
                f"--target={name}",
                f"--signature-type={signature}",
                f"--source={FUNCTIONS_DIR / 'main.py'}",
                "--host=127.0.0.1",
                f"--port={self.ports.functions[name]}",
            ]
            env = self.function_env()
            if name == "transform":
                env["WORKERS"] = str(self.transform_workers)
            started.append((name, self._spawn(f"function-{name}", argv, env=env)))
        for name, child in started:
            self._wait_ready(f"function-{name}", child)

    def _subscribe_workers(self) -> None:
        """Push subscriptions from each queue's topic and its dead-letter topic to its function
        (the jobs topic to `transform`, the repair topic to `repair`)."""
        from google.api_core import exceptions as gexc
        from google.cloud import pubsub_v1

        subscriber = pubsub_v1.SubscriberClient()
        retry = {"minimum_backoff": {"seconds": 1}, "maximum_backoff": {"seconds": 10}}
        for queue in QUEUES:
            topic = f"projects/{self.project}/topics/{queue.topic}"
            dead_letter = f"projects/{self.project}/topics/{queue.dead_letter_topic}"
            endpoint = self.function_url(queue.function)
            policy = {"dead_letter_topic": dead_letter, "max_delivery_attempts": MAX_DELIVERIES}
            for name, source, extra in (
                (queue.subscription, topic, {"dead_letter_policy": policy}),
                (queue.dead_letter_subscription, dead_letter, {}),
            ):
                try:
                    subscriber.create_subscription(
                        request={
                            "name": subscriber.subscription_path(self.project, name),
                            "topic": source,
                            "push_config": {"push_endpoint": f"{endpoint}/{source}"},
                            "ack_deadline_seconds": queue.ack_deadline,
                            "retry_policy": retry,
                            **extra,
                        }
                    )
                except gexc.AlreadyExists:
                    pass

    def _start_scheduler(self) -> None:
        """The timer that publishes a tick to the repair topic every `repair_every` seconds."""
        if not self.repair_every:
            return
        self._start_ready_child(
            "scheduler",
            "devstack.scheduler",
            f"--project={self.project}",
            f"--topic={REPAIR_TOPIC}",
            f"--every={self.repair_every:g}",
        )

    def _start_gateway_and_bridge(self) -> None:
        backends = [f"--backend={n}={self.function_url(n)}" for n, s in FUNCTIONS.items() if s == "http"]
        gateway = self._spawn(
            "gateway",
            [
                sys.executable,
                "-m",
                "devstack.gateway",
                f"--port={self.ports.gateway}",
                f"--spec={OPENAPI}",
                f"--project={self.project}",
                *backends,
            ],
        )
        self._wait_ready("gateway", gateway)
        if not self.events:
            return
        self._start_ready_child(
            "bridge",
            "devstack.bridge",
            f"--project={self.project}",
            f"--subscription={NOTIFICATIONS_SUBSCRIPTION}",
            f"--target={self.function_url('process')}",
        )

    def _start_ready_child(self, name: str, module: str, *args: str) -> None:
        """A devstack module as the child `name`, which writes `<name>.ready` in the log folder once
        it works; waits for that file."""
        ready = self.log_dir / f"{name}.ready"
        ready.unlink(missing_ok=True)  # `make run`'s log folder outlives a run
        child = self._spawn(name, [sys.executable, "-m", module, *args, f"--ready-file={ready}"])
        self._wait_ready(name, child)

    def _wait_ready(self, part: str, child: Child) -> None:
        """Until `part` (a child's name) answers, or raise with the tail of its log."""
        if part.startswith("function-"):
            check, timeout, what = port_open(self.ports.functions[part.removeprefix("function-")]), 60, part
        else:
            check, timeout, what = {
                "firestore": (http_ok(f"http://127.0.0.1:{self.ports.firestore}/"), 90, "the Firestore emulator"),
                "pubsub": (http_ok(f"http://127.0.0.1:{self.ports.pubsub}/"), 90, "the Pub/Sub emulator"),
                "storage": (http_ok(f"http://127.0.0.1:{self.ports.storage}/storage/v1/b"), 30, "fake-gcs-server"),
                "gateway": (http_ok(f"{self.gateway_url}/health"), 60, "the gateway"),
                "bridge": (lambda: (self.log_dir / "bridge.ready").exists(), 60, "the event bridge"),
                "scheduler": (lambda: (self.log_dir / "scheduler.ready").exists(), 60, "the repair timer"),
            }[part]
        wait_until(check, child=child, timeout=timeout, what=what)

    # faults (tests/faults, docs/reliability.md) ------------------------------
    # The emulators keep nothing across a restart (fake-gcs-server's memory
    # backend, the Firestore and Pub/Sub emulators are in memory): `start_part`
    # starts a part again on the same port with the same arguments and makes the
    # stack's own resources again (buckets; topics and subscriptions), but every
    # record, object and unacknowledged message the part held is gone.
    @property
    def parts(self) -> list[str]:
        """Names `stop_part`/`start_part` accept: storage, firestore, pubsub, gateway, bridge, scheduler,
        function-NAME."""
        return [child.name for child in self.children]

    def child(self, part: str) -> Child:
        for child in self.children:
            if child.name == part:
                return child
        raise KeyError(f"no part {part!r} in this stack (parts: {', '.join(self.parts)})")

    def stop_part(self, part: str) -> None:
        """Stop one part (its whole process group, as `stop` does); the rest keeps running."""
        self.child(part).stop()

    def kill_function(self, name: str) -> None:
        """SIGKILL function `name`'s processes at once, as a crashed instance: no graceful shutdown,
        requests and events in flight are cut. `start_part(f"function-{name}")` starts it again."""
        self.child(f"function-{name}").kill()

    def start_part(self, part: str) -> Child:
        """Start a stopped (or killed) part again, on the same port with the same arguments, and wait
        until it answers; an emulator's resources the stack made (buckets, topics, subscriptions)
        are made again. The bridge is restarted after Pub/Sub: its subscription was gone meanwhile."""
        old = self.child(part)
        if not old.stopped:
            old.stop()
        argv, env = self._specs[part]
        if part in ("bridge", "scheduler"):
            (self.log_dir / f"{part}.ready").unlink(missing_ok=True)
        child = spawn(part, argv, env=env, log_dir=self.log_dir, cwd=REPO)
        self.children[self.children.index(old)] = child
        self._wait_ready(part, child)
        if part == "storage":
            self._create_buckets()
        elif part == "pubsub":
            self._create_topics()
            self._subscribe_workers()
            if "bridge" in self.parts:
                self.start_part("bridge")
        return child

    # test helpers ------------------------------------------------------------
    def reset_firestore(self) -> None:
        url = (
            f"http://127.0.0.1:{self.ports.firestore}/emulator/v1/projects/{self.project}/databases/(default)/documents"
        )
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=30).read()

    def write_env_file(self, path: Path, extra: dict[str, str] | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        values = {**self.client_env(), **(extra or {})}
        path.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items()))
