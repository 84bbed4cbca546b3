"""`aperture upload`, `images ls|get|rm`, `get` and `stats` against the running local stack
(S6, S8). Commands run in-process through click's CliRunner (the `cli` fixture of
test_cli.py)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from tests.integration.test_cli import failed, fields, ok, rows, runner
from tests.integration.test_processing import camera_jpeg
from tests.support.api import settled, upload
from tests.support.images import encode, random_image

MiB = 1024 * 1024


@pytest.fixture
def cli(stack):
    return runner(stack)


def store(firestore_client):
    from aperture.storage.images import ImageStore

    return ImageStore(firestore_client)


def write(path: Path, data: bytes) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- upload ---------------------------------------------------------------------------


def test_upload_a_folder_with_nested_dirs_a_text_file_and_a_duplicate(cli, gateway, make_caller, tmp_path):
    alice = make_caller("team-a", "member")
    before = encode(random_image("RGB", (40, 30), seed=1))
    upload(gateway, alice, ("before.png", before))  # uploaded earlier: answered duplicate
    root = tmp_path / "photos"
    png = write(root / "a.png", encode(random_image("RGB", (32, 24), seed=2)))
    jpg = write(root / "trip" / "b.jpg", encode(random_image("RGB", (48, 36), seed=3), "JPEG"))
    webp = write(root / "trip" / "day2" / "c.webp", encode(random_image("RGB", (20, 20), seed=4), "WEBP"))
    write(root / "trip" / "again.png", before)
    (root / "notes.txt").write_text("not an image")
    write(root / ".hidden" / "h.png", encode(random_image("RGB", seed=5)))  # hidden: skipped
    write(root / ".dot.png", encode(random_image("RGB", seed=6)))
    with open(root / "huge.png", "wb") as file:  # over the per-file limit: rejected here, never sent
        file.truncate(25 * MiB + 1)

    result = cli("upload", str(root), key=alice.key)

    assert result.exit_code == 1, result.output
    assert fields(result.stdout) == {"created": "3", "duplicate": "1", "rejected": "2"}
    assert f"{root / 'notes.txt'}: error 422: " in result.stderr
    assert f"{root / 'huge.png'}: larger than the API's limit of 25.0 MiB per file" in result.stderr
    assert result.stderr.rstrip().endswith("error: 2 of 6 files rejected")
    listed = gateway.get("/v1/images", headers=alice.headers).json()["images"]
    assert {i["id"] for i in listed} == {sha(before), sha(png), sha(jpg), sha(webp)}
    assert {i["filename"] for i in listed} == {"before.png", "a.png", "b.jpg", "c.webp"}

    # again, as JSON: every image is there already; the per-file results
    again = cli("--json", "upload", str(root), "--parallel", "2", key=alice.key)
    assert again.exit_code == 1
    report = json.loads(again.stdout)
    assert (report["created"], report["duplicate"], report["rejected"]) == (0, 4, 2)
    by_path = {Path(f["path"]).relative_to(root).as_posix(): f for f in report["files"]}
    assert set(by_path) == {"a.png", "huge.png", "notes.txt", "trip/again.png", "trip/b.jpg", "trip/day2/c.webp"}
    assert by_path["trip/b.jpg"] == {
        "path": str(root / "trip" / "b.jpg"),
        "filename": "b.jpg",
        "size": len(jpg),
        "status": "duplicate",
        "id": sha(jpg),
    }
    assert by_path["notes.txt"]["status"] == "rejected" and by_path["notes.txt"]["status_code"] == 422
    assert by_path["notes.txt"]["id"] is None and by_path["notes.txt"]["error"]
    assert "status_code" not in by_path["huge.png"]


def test_upload_of_images_only_exits_0(cli, make_caller, tmp_path):
    alice = make_caller("team-a", "member")
    files = [write(tmp_path / f"{n}.png", encode(random_image("RGB", seed=20 + n))) for n in range(3)]

    result = cli("upload", *(str(tmp_path / f"{n}.png") for n in range(3)), "--progress", key=alice.key)

    assert fields(ok(result)) == {"created": "3", "duplicate": "0", "rejected": "0"}
    assert "uploading 3 files" in result.stderr and "[" in result.stderr  # the bar: on stderr only
    assert len(files) == 3


# -- images ls / get / rm -------------------------------------------------------------


def test_images_ls_get_and_rm(cli, gateway, make_caller, tmp_path):
    alice = make_caller("team-a", "member")
    bob = make_caller("team-b", "member")
    png = encode(random_image("RGB", (30, 20), seed=30))
    jpg = encode(random_image("RGB", (16, 12), seed=31), "JPEG")
    gif = encode(random_image("RGB", (8, 8), seed=32), "GIF")
    png_id, jpg_id, gif_id = upload(gateway, alice, ("p.png", png), ("j.jpg", jpg), ("g.gif", gif))
    [bobs] = upload(gateway, bob, ("bob.png", encode(random_image("RGB", seed=33))))

    listed = rows(ok(cli("images", "ls", key=alice.key)))
    assert {r["ID"] for r in listed} == {png_id, jpg_id, gif_id}
    assert {(r["FILENAME"], r["FORMAT"], r["PIXELS"]) for r in listed} == {
        ("p.png", "PNG", "30x20"),
        ("j.jpg", "JPEG", "16x12"),
        ("g.gif", "GIF", "8x8"),
    }
    assert [r["ID"] for r in rows(ok(cli("images", "ls", "--format", "jpg", key=alice.key)))] == [jpg_id]
    paged = cli("images", "ls", "--limit", "2", key=alice.key)
    assert len(rows(ok(paged))) == 2 and "more: aperture images ls --cursor " in paged.stderr
    everything = json.loads(ok(cli("--json", "images", "ls", "--limit", "1", "--all", key=alice.key)))
    assert {i["id"] for i in everything["images"]} == {png_id, jpg_id, gif_id} and everything["next_cursor"] is None
    failed(cli("images", "ls", "--after", "yesterday", key=alice.key), 1, "error 400: ")

    shown = fields(ok(cli("images", "get", png_id, key=alice.key)))
    assert (shown["id"], shown["filename"], shown["format"], shown["pixels"]) == (png_id, "p.png", "PNG", "30x20")
    record = json.loads(ok(cli("images", "get", jpg_id, "--json", key=alice.key)))
    assert record["id"] == jpg_id and record["size"] == len(jpg) and record["mime_type"] == "image/jpeg"
    failed(cli("images", "get", bobs, key=alice.key), 1, "error 404: ")

    # rm asks first: "n" keeps the image
    kept = cli("images", "rm", gif_id, key=alice.key, input="n\n")
    assert kept.exit_code == 1 and "Aborted" in kept.stderr
    assert gateway.get(f"/v1/images/{gif_id}", headers=alice.headers).status_code == 200
    removed = cli("images", "rm", gif_id, key=alice.key, input="y\n")
    assert ok(removed).strip() == f"deleted {gif_id}"
    # another team's id is 404, like a missing one, and the others are still deleted
    mixed = cli("images", "rm", "--yes", png_id, bobs, key=alice.key)
    assert mixed.exit_code == 1
    assert mixed.stdout.strip() == f"deleted {png_id}"
    assert f"{bobs}: error 404: " in mixed.stderr and "error: 1 of 2 images not deleted" in mixed.stderr
    assert gateway.get(f"/v1/images/{png_id}", headers=alice.headers).status_code == 404
    assert gateway.get(f"/v1/images/{bobs}", headers=bob.headers).status_code == 200
    assert [r["ID"] for r in rows(ok(cli("images", "ls", key=alice.key)))] == [jpg_id]


# -- get ------------------------------------------------------------------------------


def test_get_the_original_and_a_conversion(cli, gateway, make_caller, tmp_path, monkeypatch):
    alice = make_caller("team-a", "member")
    original = encode(random_image("RGB", (64, 32), seed=40), "JPEG")
    [image_id] = upload(gateway, alice, ("wide.jpg", original))
    monkeypatch.chdir(tmp_path)

    got = cli("get", image_id, key=alice.key)  # default name: ID.EXT in the working directory
    assert ok(got) == "" and f"wrote {image_id}.jpg" in got.stderr
    assert (tmp_path / f"{image_id}.jpg").read_bytes() == original

    converted = cli(
        "get", image_id, "--as", "png", "--ops", "resize:16x16|rotate:90", "-o", str(tmp_path / "t.png"), key=alice.key
    )
    ok(converted)
    with Image.open(tmp_path / "t.png") as image:
        assert (image.format, image.size) == ("PNG", (8, 16))  # 64x32 fit in 16x16 is 16x8, rotated 8x16

    to_stdout = cli("get", image_id, "--as", "webp", "-o", "-", key=alice.key)
    assert to_stdout.exit_code == 0, to_stdout.stderr
    with Image.open(io.BytesIO(to_stdout.stdout_bytes)) as image:
        assert (image.format, image.size) == ("WEBP", (64, 32))
    assert cli("get", image_id, "-o", "-", key=alice.key).stdout_bytes == original

    # refusals: an existing file (exit 2, nothing replaced), then --force replaces it
    (tmp_path / "taken.png").write_bytes(b"mine")
    failed(cli("get", image_id, "--as", "png", "-o", "taken.png", key=alice.key), 2, "error: taken.png exists")
    assert (tmp_path / "taken.png").read_bytes() == b"mine"
    failed(cli("get", image_id, key=alice.key), 2, f"error: {image_id}.jpg exists")
    ok(cli("get", image_id, "--as", "png", "-o", "taken.png", "--force", key=alice.key))
    assert (tmp_path / "taken.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the API's 400 reasons, and no file left behind
    bad_format = failed(cli("get", image_id, "--as", "svg", "-o", "x.svg", key=alice.key), 1, "error 400: ")
    assert "svg" in bad_format
    bad_ops = failed(cli("get", image_id, "--ops", "frobnicate:1", "-o", "x.jpg", key=alice.key), 1, "error 400: ")
    assert "frobnicate" in bad_ops
    assert not (tmp_path / "x.svg").exists() and not (tmp_path / "x.jpg").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{image_id}.jpg", "t.png", "taken.png"])
    failed(cli("get", "0" * 64, "-o", "none.jpg", key=alice.key), 1, "error 404: ")


# -- stats ----------------------------------------------------------------------------


def test_stats_after_processing(cli, make_caller, firestore_client, tmp_path):
    alice = make_caller("team-a", "member")
    images = {
        "c1.jpg": camera_jpeg(model="Canon EOS R5", seed=50, size=(64, 48)),
        "c2.jpg": camera_jpeg(model="Canon EOS R5", seed=51, size=(64, 48)),
        "n.jpg": camera_jpeg(make="NIKON", model="NIKON D850", seed=52, size=(64, 48)),
        "p.png": encode(random_image("RGB", seed=53)),
        "w.webp": encode(random_image("RGB", seed=54), "WEBP"),
    }
    for name, data in images.items():
        write(tmp_path / name, data)
    ok(cli("upload", str(tmp_path), key=alice.key))
    store_ = store(firestore_client)
    for data in images.values():
        assert settled(store_, "team-a", sha(data)).status == "processed"

    body = json.loads(ok(cli("stats", "--json", key=alice.key)))
    text = ok(cli("stats", key=alice.key))

    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert len(body["uploads_per_day"]) == 30 and body["uploads_per_day"][-1] == {"date": today, "uploads": 5}
    assert body["total_images"] == 5 and body["most_popular_format"] == "JPEG"
    assert body["formats"] == {"JPEG": 3, "PNG": 1, "WEBP": 1}
    cameras = {c["camera"]: c["images"] for c in body["top_cameras"]}
    assert [c["images"] for c in body["top_cameras"]][0] == 2 and sum(cameras.values()) == 3
    head, chart, top = text.split("\n\n")
    assert fields(head) == {"images": "5", "most_popular": "JPEG", "formats": "JPEG 3, PNG 1, WEBP 1"}
    days = chart.splitlines()
    assert days[0] == "uploads per day (UTC, last 30 days)" and len(days) == 31
    assert days[-1] == f"{today}  5  " + "#" * 40
    assert rows(top)[0]["IMAGES"] == "2"
