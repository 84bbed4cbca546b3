"""Batch jobs (S9) end to end: POST /v1/jobs -> Pub/Sub emulator -> `transform` workers -> derived bucket."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from tests.support.api import upload
from tests.support.images import encode, random_image


def photo(seed: int, size=(64, 48)) -> Image.Image:
    """A smooth photo-like RGB image (gradients plus noise), different per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    base = np.stack([x * 255 / size[0], y * 255 / size[1], (x + y) * 127 / (size[0] + size[1])], axis=-1)
    noisy = base + rng.normal(0, 25, base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def opencv_blur(image: Image.Image, kernel: int) -> np.ndarray:
    """OpenCV's GaussianBlur(image, (k, k), 0), independently: its sigma formula, reflect-101 borders."""
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    taps = np.exp(-((np.arange(kernel) - (kernel - 1) / 2) ** 2) / (2 * sigma**2))
    taps /= taps.sum()
    pixels = np.asarray(image, dtype=np.float64)
    for axis in (0, 1):
        pixels = ndimage.correlate1d(pixels, taps, axis=axis, mode="mirror")
    return np.clip(np.rint(pixels), 0, 255)


def expected_quarters(image: Image.Image, percent: float, kernel: int) -> list[np.ndarray]:
    width, height = (max(1, int(side * percent / 100 + 0.5)) for side in image.size)
    resized = image.resize((width, height), Image.Resampling.LANCZOS)
    mid_x, mid_y = width // 2, height // 2
    boxes = [(0, 0, mid_x, mid_y), (mid_x, 0, width, mid_y), (0, mid_y, mid_x, height), (mid_x, mid_y, width, height)]
    return [opencv_blur(resized.crop(box), kernel) for box in boxes]


def wait_finished(gateway, caller, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = gateway.get(f"/v1/jobs/{job_id}", headers=caller.headers).json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} still {job['status']}: {job['counts']}")


def submit(gateway, caller, images, operations):
    return gateway.post("/v1/jobs", headers=caller.headers, json={"images": images, "operations": operations})


def job_documents(firestore_client) -> list:
    return list(firestore_client.collection("jobs").stream())


def test_fifty_images_resized_split_and_blurred_match_a_reference(gateway, make_caller):
    # Arrange
    alice = make_caller("team-a", "member")
    sources = [photo(seed) for seed in range(50)]
    ids = upload(gateway, alice, *[(f"p{seed}.png", encode(image)) for seed, image in enumerate(sources)])
    images = [{"input": image_id, "output": f"out/p{seed}.png"} for seed, image_id in enumerate(ids)]

    # Act
    response = submit(gateway, alice, images, ["resize=50", "split=True", "blur=5"])
    job = wait_finished(gateway, alice, response.json()["job_id"])

    # Assert
    assert response.status_code == 202, response.text
    assert response.json()["status_url"].endswith(f"/v1/jobs/{job['job_id']}")
    assert job["status"] == "done", job["counts"]
    assert job["counts"] == {"queued": 0, "running": 0, "done": 50, "failed": 0, "cancelled": 0}
    for seed, item in enumerate(job["items"]):
        names = [o["name"] for o in item["outputs"]]
        assert names == [f"out/p{seed}-{q}.png" for q in ("top-left", "top-right", "bottom-left", "bottom-right")]
        for output, expected in zip(item["outputs"], expected_quarters(sources[seed], 50, 5)):
            got = gateway.get(output["url"], headers=alice.headers)
            assert got.status_code == 200, got.text
            pixels = np.asarray(Image.open(io.BytesIO(got.content)).convert("RGB"), dtype=np.float64)
            assert pixels.shape == expected.shape
            assert np.abs(pixels - expected).max() <= 1, (seed, output["name"])


def test_items_run_concurrently_on_several_workers(gateway, make_caller):
    alice = make_caller("team-a", "member")
    ids = upload(gateway, alice, *[(f"big{seed}.png", encode(photo(seed, (900, 700)))) for seed in range(8)])

    job = wait_finished(
        gateway,
        alice,
        submit(gateway, alice, [{"input": i, "output": f"c/{n}.png"} for n, i in enumerate(ids)], ["blur=31"]).json()[
            "job_id"
        ],
    )

    assert job["status"] == "done"
    spans = sorted((item["started_at"], item["finished_at"]) for item in job["items"])
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), spans


def test_a_failed_run_is_delivered_again_and_counted_once(gateway, make_caller):
    alice = make_caller("team-a", "member")
    ids = upload(gateway, alice, *[(f"r{seed}.png", encode(photo(seed))) for seed in range(3)])
    images = [
        {"input": ids[0], "output": "fails-once.png"},
        {"input": ids[1], "output": "fine.png"},
        {"input": ids[2], "output": "also-fine.webp"},
    ]

    job = wait_finished(gateway, alice, submit(gateway, alice, images, ["resize=50"]).json()["job_id"])

    assert job["status"] == "done"
    assert job["counts"]["done"] == 3 and sum(job["counts"].values()) == 3
    flaky = job["items"][0]
    assert flaky["attempts"] == 2 and "error" not in flaky
    assert [o["name"] for o in job["items"][2]["outputs"]] == ["also-fine.webp"]


def test_a_poison_item_ends_failed_through_the_dead_letter_topic(gateway, make_caller):
    alice = make_caller("team-a", "member")
    ids = upload(gateway, alice, *[(f"x{seed}.png", encode(photo(seed))) for seed in range(2)])
    images = [{"input": ids[0], "output": "poison.png"}, {"input": ids[1], "output": "healthy.png"}]

    job = wait_finished(gateway, alice, submit(gateway, alice, images, ["grayscale"]).json()["job_id"], timeout=150)

    assert job["status"] == "partial"
    assert job["counts"]["failed"] == 1 and job["counts"]["done"] == 1
    poison = job["items"][0]
    assert poison["state"] == "failed" and "gave up after 5 deliveries" in poison["error"]
    assert "injected fault" in poison["error"]


@pytest.mark.parametrize(
    "operations, image, reason",
    [
        (["frobnicate=1"], {"output": "a.png"}, "unknown operation"),
        (["resize=0"], {"output": "a.png"}, "resize"),
        (["resize=101"], {"output": "a.png"}, "at most 100"),
        (["blur=-1"], {"output": "a.png"}, "blur"),
        (["resize=50"], {"output": "../escape.png"}, "images[0]"),
        (["resize=50"], {"output": "/abs.png"}, "images[0]"),
        (["resize=50"], {"output": "a.exe"}, "extension"),
    ],
)
def test_bad_requests_are_refused_and_nothing_is_queued(
    gateway, make_caller, firestore_client, operations, image, reason
):
    alice = make_caller("team-a", "member")
    [image_id] = upload(gateway, alice, ("one.png", encode(photo(1))))

    response = submit(gateway, alice, [{"input": image_id, **image}], operations)

    assert response.status_code == 400, response.text
    assert reason in response.json()["error"]["message"]
    assert job_documents(firestore_client) == []


def test_missing_or_other_teams_inputs_are_404_and_nothing_is_queued(gateway, make_caller, firestore_client):
    alice, bob = make_caller("team-a", "member"), make_caller("team-b", "member")
    [bobs] = upload(gateway, bob, ("bob.png", encode(random_image("RGB", seed=5))))

    theirs = submit(gateway, alice, [{"input": bobs, "output": "a.png"}], ["resize=50"])
    missing = submit(gateway, alice, [{"input": "0" * 64, "output": "a.png"}], ["resize=50"])

    assert theirs.status_code == missing.status_code == 404
    assert "images[0]" in theirs.json()["error"]["message"]
    assert job_documents(firestore_client) == []


def test_too_many_images_is_400(gateway, make_caller, firestore_client):
    alice = make_caller("team-a", "member")
    [image_id] = upload(gateway, alice, ("one.png", encode(photo(2))))

    response = submit(gateway, alice, [{"input": image_id, "output": f"{n}.png"} for n in range(1001)], ["resize=50"])

    assert response.status_code == 400 and "1000" in response.json()["error"]["message"]
    assert job_documents(firestore_client) == []


def test_inputs_by_object_name_and_filename(gateway, make_caller):
    alice = make_caller("team-a", "member")
    [image_id] = upload(gateway, alice, ("named.png", encode(photo(3))))

    job = wait_finished(
        gateway,
        alice,
        submit(
            gateway,
            alice,
            [
                {"input": f"teams/team-a/{image_id}.png", "output": "by-object"},
                {"input": "named.png", "output": "by-name.jpg"},
            ],
            ["rotate=90"],
        ).json()["job_id"],
    )

    assert job["status"] == "done"
    assert [item["image_id"] for item in job["items"]] == [image_id, image_id]
    assert [item["outputs"][0]["name"] for item in job["items"]] == ["by-object.png", "by-name.jpg"]


def test_jobs_and_outputs_are_invisible_to_other_teams(gateway, make_caller):
    alice, bob = make_caller("team-a", "member"), make_caller("team-b", "member")
    [image_id] = upload(gateway, alice, ("mine.png", encode(photo(4))))
    job = wait_finished(
        gateway, alice, submit(gateway, alice, [{"input": image_id, "output": "o.png"}], ["grayscale"]).json()["job_id"]
    )
    signed = job["items"][0]["outputs"][0]["url"]
    keyed_url = signed.split("?", 1)[0]  # the output's path, without alice's signature
    forged = signed.replace("team=team-a", "team=team-b")

    assert gateway.get(f"/v1/jobs/{job['job_id']}", headers=bob.headers).status_code == 404
    assert gateway.delete(f"/v1/jobs/{job['job_id']}", headers=bob.headers).status_code == 404
    assert gateway.get(keyed_url, headers=bob.headers).status_code == 404
    assert gateway.get(forged).status_code == 403
    # the signed link itself is a bearer credential: whoever alice hands it to may read it, without a key
    assert gateway.get(signed).status_code == 200
    assert gateway.get("/v1/jobs", headers=bob.headers).json()["jobs"] == []
    assert [j["job_id"] for j in gateway.get("/v1/jobs", headers=alice.headers).json()["jobs"]] == [job["job_id"]]


def test_cancel_stops_the_items_not_started(gateway, make_caller):
    alice = make_caller("team-a", "member")
    ids = upload(gateway, alice, *[(f"k{seed}.png", encode(photo(seed, (800, 600)))) for seed in range(12)])
    job_id = submit(
        gateway, alice, [{"input": i, "output": f"k/{n}.png"} for n, i in enumerate(ids)], ["blur=41"]
    ).json()["job_id"]

    cancelled = gateway.delete(f"/v1/jobs/{job_id}", headers=alice.headers)
    job = wait_finished(gateway, alice, job_id)

    assert cancelled.status_code == 200
    counts = job["counts"]
    assert counts["cancelled"] >= 1 and counts["queued"] == counts["running"] == 0
    assert counts["done"] + counts["cancelled"] == 12
    assert job["status"] in ("cancelled", "partial")
    assert all(not item["outputs"] for item in job["items"] if item["state"] == "cancelled")
