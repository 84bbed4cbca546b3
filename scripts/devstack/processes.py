"""Child processes that never outlive the stack.

Each child runs in its own process group (the gcloud emulator wrappers start
Java children), and stopping kills the whole group: no orphaned JVMs.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Listening ports come from below the kernel's ephemeral range (32768-60999 on
# Linux): a port the kernel hands out for port 0 can be taken again, between our
# check and the child's bind, as the local port of any outgoing connection
# (seen in CI: "address already in use" for a gateway while another stack ran).
_LISTEN_PORTS = range(20_000, 32_000)
_taken: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now, outside the ephemeral range, not handed out before by this process."""
    for _ in range(200):
        port = random.choice(_LISTEN_PORTS)
        if port in _taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _taken.add(port)
        return port
    raise RuntimeError("no free port between 20000 and 32000")


@dataclass
class Child:
    name: str
    popen: subprocess.Popen
    log_path: Path
    stopped: bool = field(default=False)

    def stop(self, grace: float = 5.0) -> None:
        if self.stopped:
            return
        self.stopped = True
        try:
            pgid = os.getpgid(self.popen.pid)
        except ProcessLookupError:
            return
        steps = ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)) if grace > 0 else ((signal.SIGKILL, 5.0),)
        for sig, wait in steps:
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not _group_alive(pgid):
                    self.popen.poll()
                    return
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash would (no SIGTERM first), and wait until it is gone."""
        self.stop(grace=0.0)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies of our own children count as gone once reaped.
    try:
        while os.waitpid(-pgid, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def spawn(name: str, argv: Sequence[str], *, env: Mapping[str, str], log_dir: Path, cwd: Path | None = None) -> Child:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "ab")
    popen = subprocess.Popen(
        list(argv),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # own process group, see module docstring
    )
    log.close()
    return Child(name, popen, log_path)


def wait_until(check: Callable[[], bool], *, child: Child, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.popen.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.popen.returncode} before {what}:\n{child.tail()}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{child.name}: timed out after {timeout:.0f}s waiting for {what}:\n{child.tail()}")


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        with urllib.request.urlopen(url, timeout=1) as response:
            return 200 <= response.status < 500

    return check


def port_open(port: int) -> Callable[[], bool]:
    def check() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True

    return check
