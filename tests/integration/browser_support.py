"""Helpers of the browser tests (tests/integration/test_browser.py): Debian's chromium
through Playwright, photos with recognisable content, keyboard steps, screenshots."""

from __future__ import annotations

import base64
import io
import time
from importlib import resources
from pathlib import Path

from PIL import Image

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def photo(name: str, fmt: str) -> bytes:
    """One of scikit-image's sample photos (coffee, chelsea the cat, a rocket…) encoded as `fmt`."""
    image = Image.open(resources.files("skimage") / "data" / name).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def drop_files(page, selector: str, files: list[tuple[str, str, bytes]]) -> None:
    """Dispatches a real `drop` event on `selector` whose DataTransfer carries `files` (name, type, bytes)."""
    payload = [{"name": n, "type": t, "data": base64.b64encode(b).decode()} for n, t, b in files]
    handle = page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
                dt.items.add(new File([bytes], f.name, { type: f.type }));
            }
            return dt;
        }""",
        payload,
    )
    page.dispatch_event(selector, "dragenter", {"dataTransfer": handle})
    page.dispatch_event(selector, "dragover", {"dataTransfer": handle})
    page.dispatch_event(selector, "drop", {"dataTransfer": handle})


def focused(page) -> dict:
    return page.evaluate(
        """() => { const e = document.activeElement;
                   return { tag: e.tagName.toLowerCase(), id: e.id, text: (e.textContent || '').trim(),
                            href: e.getAttribute('href'), type: e.getAttribute('type') }; }"""
    )


def tab_to(page, predicate, limit: int = 60, key: str = "Tab") -> dict:
    """Presses Tab until the focused element satisfies `predicate`; that element's description."""
    for _ in range(limit):
        page.keyboard.press(key)
        element = focused(page)
        if predicate(element):
            return element
    raise AssertionError(f"no focusable element matched after {limit} presses of {key}; last: {focused(page)}")


def wait_processed(gateway, caller, ids, timeout: float = 60.0) -> None:
    """Until `process` is done with every image (search and stats see only processed ones)."""
    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        for image_id in list(pending):
            record = gateway.get(f"/v1/images/{image_id}", headers=caller.headers).json()
            if record.get("status") == "processed":
                pending.discard(image_id)
            else:
                assert record.get("status") != "failed", record
        time.sleep(0.2)
    assert not pending, f"still processing: {pending}"


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
