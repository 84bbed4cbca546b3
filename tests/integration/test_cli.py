"""The `aperture` operator CLI against the running local stack (S5, S9, S11).

Commands run in-process through click's CliRunner, and once more as a real
subprocess through the installed console script (`pip install -e .`).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aperture.cli import main
from tests.integration.test_search import skimage_photo
from tests.support.api import settled, upload
from tests.support.images import encode, random_image

SCRIPT = Path(sys.executable).parent / "aperture"


def runner(stack):
    """run(*args, key=KEY, input=TEXT) -> click Result; the environment holds only what is
    given; `input` is stdin (answers to prompts)."""

    def run(*args: str, key: str | None = None, input: str | None = None, **env: str | None):  # noqa: A002
        environ = {"APERTURE_URL": stack.gateway_url, "APERTURE_API_KEY": key, "DEMO_API_KEY": None}
        environ.update(env)
        return CliRunner().invoke(main, list(args), env=environ, input=input, catch_exceptions=False)

    return run


@pytest.fixture
def cli(stack):
    """The CLI in-process against the stack (`runner`)."""
    return runner(stack)


def ok(result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def failed(result, exit_code: int, prefix: str) -> str:
    assert result.exit_code == exit_code, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.stderr.startswith(prefix), result.stderr
    return result.stderr


def fields(text: str) -> dict[str, str]:
    """`label  value` lines (what bootstrap, whoami and keys create print)."""
    return dict(line.split(None, 1) for line in text.splitlines() if line.strip())


def rows(text: str) -> list[dict[str, str]]:
    """A table printed by the CLI (columns are split on runs of 2+ spaces)."""
    import re

    lines = [line for line in text.splitlines() if line.strip()]
    heads = re.split(r"\s{2,}", lines[0].strip())
    return [dict(zip(heads, re.split(r"\s{2,}", line.strip()))) for line in lines[1:]]


# -- bootstrap ----------------------------------------------------------------------


def test_bootstrap_prints_a_key_that_works(cli, stack):
    result = cli(
        "bootstrap",
        "--team",
        "ops",
        "--email",
        "root@ops.example",
        FIRESTORE_EMULATOR_HOST=stack.client_env()["FIRESTORE_EMULATOR_HOST"],
        GOOGLE_CLOUD_PROJECT=stack.project,
    )

    printed = fields(ok(result))
    assert printed["team"] == "ops" and printed["role"] == "owner" and printed["email"] == "root@ops.example"
    assert printed["key"].startswith("apk_")
    assert "shown only once" in result.stderr and "emulator" in result.stderr

    me = json.loads(ok(cli("--json", "whoami", key=printed["key"])))
    assert me == {"key_id": printed["key_id"], "user_id": printed["user_id"], "team": "ops", "role": "owner"}


def test_bootstrap_into_an_existing_team_adds_a_user(cli, make_caller):
    admin = make_caller("team-a", "admin")

    created = json.loads(
        ok(cli("--json", "bootstrap", "--team", "team-a", "--email", "second@team-a.example", "--role", "member"))
    )

    assert created["team_id"] == "team-a" and created["role"] == "member"
    emails = {r["EMAIL"] for r in rows(ok(cli("users", "list", key=admin.key)))}
    assert "second@team-a.example" in emails


def test_bootstrap_checks_its_input_before_touching_firestore(cli):
    failed(cli("bootstrap", "--team", "Bad Team", "--email", "x@y.example"), 2, "error: --team")
    failed(cli("bootstrap", "--team", "good-team", "--email", "not-an-email"), 2, "error: --email")


def test_bootstrap_without_a_reachable_emulator_fails_fast(cli):
    failed(
        cli("bootstrap", "--team", "ops", "--email", "x@ops.example", FIRESTORE_EMULATOR_HOST="127.0.0.1:9"),
        1,
        "Firestore emulator at 127.0.0.1:9",
    )


# -- the installed console script --------------------------------------------------


def test_console_script_runs_as_a_subprocess(stack):
    if not SCRIPT.exists():
        pytest.fail(f"{SCRIPT} is missing: run `pip install -e .` (requirements-dev.txt does)")
    env = {k: v for k, v in os.environ.items() if k not in ("APERTURE_API_KEY", "DEMO_API_KEY", "APERTURE_URL")}
    env.update(stack.client_env())  # GATEWAY_URL, FIRESTORE_EMULATOR_HOST, GOOGLE_CLOUD_PROJECT

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(SCRIPT), *args], env={**env, **extra}, capture_output=True, text=True, timeout=120)

    boot = run("--json", "bootstrap", "--team", "ops", "--email", "root@ops.example")
    assert boot.returncode == 0, boot.stderr
    key = json.loads(boot.stdout)["key"]

    me = run("whoami", DEMO_API_KEY=key)  # the variable .aperture/local.env holds
    assert me.returncode == 0, me.stderr
    assert fields(me.stdout)["team"] == "ops"
    assert key not in me.stdout + me.stderr

    missing = run("whoami")
    assert missing.returncode == 2
    assert "no API key" in missing.stderr


# -- teams ---------------------------------------------------------------------------


def test_owner_creates_and_lists_teams(cli, make_caller):
    owner = make_caller("platform", "owner")

    created = rows(ok(cli("teams", "create", "acme", "--name", "Acme Inc", "--gps", key=owner.key)))
    assert created == [{"TEAM": "acme", "NAME": "Acme Inc", "GPS": "yes", "CREATED": created[0]["CREATED"]}]
    ok(cli("teams", "create", "beta", key=owner.key))

    listed = {r["TEAM"]: r for r in rows(ok(cli("teams", "list", key=owner.key)))}
    assert set(listed) == {"acme", "beta", "platform"}
    assert listed["beta"]["NAME"] == "beta" and listed["beta"]["GPS"] == "no"

    as_json = json.loads(ok(cli("teams", "list", "--json", key=owner.key)))  # --json after the command too
    assert {t["team_id"] for t in as_json["teams"]} == {"acme", "beta", "platform"}

    failed(cli("teams", "create", "acme", key=owner.key), 1, "error 409: ")
    failed(cli("teams", "create", "Not_Valid", key=owner.key), 1, "error 400: ")


def test_member_is_refused_with_403(cli, make_caller):
    member = make_caller("team-a", "member")

    for args in (["teams", "list"], ["teams", "create", "newteam"], ["keys", "list"], ["users", "list"]):
        stderr = failed(cli(*args, key=member.key), 1, "error 403: ")
        assert "role" in stderr and member.key not in stderr


# -- users ---------------------------------------------------------------------------


def test_users_create_and_list(cli, make_caller):
    owner = make_caller("platform", "owner")
    admin = make_caller("team-a", "admin")
    ok(cli("teams", "create", "acme", key=owner.key))

    created = rows(ok(cli("users", "create", "--team", "acme", "bob@acme.example", "--role", "admin", key=owner.key)))
    assert created[0]["EMAIL"] == "bob@acme.example" and created[0]["ROLE"] == "admin"
    assert created[0]["USER_ID"].startswith("usr_") and created[0]["TEAM"] == "acme"

    listed = rows(ok(cli("users", "list", "--team", "acme", key=owner.key)))
    assert [(r["EMAIL"], r["ROLE"]) for r in listed] == [("bob@acme.example", "admin")]

    # a team admin's own team is the default, and another team is "not found"
    ok(cli("users", "create", "carol@team-a.example", key=admin.key))
    own = {r["EMAIL"]: r["ROLE"] for r in rows(ok(cli("users", "list", key=admin.key)))}
    assert own["carol@team-a.example"] == "member" and len(own) == 2
    failed(cli("users", "list", "--team", "acme", key=admin.key), 1, "error 404: ")
    failed(cli("users", "create", "--team", "acme", "eve@acme.example", key=admin.key), 1, "error 404: ")


def test_empty_listing_says_so(cli, make_caller):
    owner = make_caller("platform", "owner")
    ok(cli("teams", "create", "empty-team", key=owner.key))

    assert ok(cli("users", "list", "--team", "empty-team", key=owner.key)).strip() == "no users"
    assert json.loads(ok(cli("--json", "keys", "list", "--team", "empty-team", key=owner.key))) == {"keys": []}


# -- keys ----------------------------------------------------------------------------


def test_keys_create_list_revoke(cli, make_caller):
    admin = make_caller("team-a", "admin")
    user = rows(ok(cli("users", "create", "dev@team-a.example", key=admin.key)))[0]

    created = cli("keys", "create", user["USER_ID"], "--name", "laptop", key=admin.key)
    new = fields(ok(created))
    assert new["user_id"] == user["USER_ID"] and new["team"] == "team-a" and new["role"] == "member"
    assert new["key"].startswith("apk_") and "shown only once" in created.stderr
    assert fields(ok(cli("whoami", key=new["key"])))["key_id"] == new["key_id"]

    listed = {r["KEY_ID"]: r for r in rows(ok(cli("keys", "list", key=admin.key)))}
    assert set(listed) == {admin.key_id, new["key_id"]}
    assert listed[new["key_id"]]["STATUS"] == "active" and listed[new["key_id"]]["USER_ID"] == user["USER_ID"]
    listing = ok(cli("--json", "keys", "list", key=admin.key))
    assert new["key"] not in listing and admin.key not in listing
    assert "key_hash" not in listing

    revoked = rows(ok(cli("keys", "revoke", new["key_id"], key=admin.key)))
    assert revoked[0]["KEY_ID"] == new["key_id"] and revoked[0]["STATUS"].startswith("revoked ")
    listed = {r["KEY_ID"]: r for r in rows(ok(cli("keys", "list", key=admin.key)))}
    assert listed[new["key_id"]]["STATUS"].startswith("revoked ")

    stderr = failed(cli("whoami", key=new["key"]), 1, "error 401: ")
    assert new["key"] not in stderr
    failed(cli("keys", "revoke", "key_doesnotexist", key=admin.key), 1, "error 404: ")


def test_owner_lists_another_teams_keys(cli, make_caller):
    owner = make_caller("platform", "owner")
    admin = make_caller("team-a", "admin")

    listed = rows(ok(cli("keys", "list", "--team", "team-a", key=owner.key)))
    assert [r["KEY_ID"] for r in listed] == [admin.key_id]
    failed(cli("keys", "list", "--team", "platform", key=admin.key), 1, "error 404: ")


def test_anyone_may_revoke_their_own_key(cli, make_caller):
    member = make_caller("team-a", "member")

    ok(cli("keys", "revoke", member.key_id, key=member.key))

    failed(cli("whoami", key=member.key), 1, "error 401: ")


# -- configuration --------------------------------------------------------------------


def test_missing_key_exits_2(cli):
    stderr = failed(cli("whoami"), 2, "error: no API key")
    assert "APERTURE_API_KEY" in stderr


def test_unknown_key_is_401_and_not_echoed(cli):
    bogus = "apk_" + "x" * 43
    stderr = failed(cli("whoami", key=bogus), 1, "error 401: ")
    assert bogus not in stderr


def test_gateway_url_comes_from_the_environment(cli, stack, make_caller):
    admin = make_caller("team-a", "admin")

    result = cli("whoami", key=admin.key, APERTURE_URL=None, GATEWAY_URL=stack.gateway_url)

    assert fields(ok(result))["team"] == "team-a"


def test_unreachable_gateway_exits_1(cli, make_caller):
    admin = make_caller("team-a", "admin")
    failed(cli("--url", "http://127.0.0.1:9", "whoami", key=admin.key), 1, "error: cannot reach http://127.0.0.1:9")


# -- jobs ------------------------------------------------------------------------------

QUARTERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def write_job(folder: Path, body: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.json"
    path.write_text(json.dumps(body))
    return path


def test_jobs_submit_uploads_local_files_watch_and_download(cli, gateway, make_caller, tmp_path):
    # Arrange: one image the team uploaded already, one file that is only on this machine
    alice = make_caller("team-a", "member")
    [remote_id] = upload(gateway, alice, ("remote.png", encode(random_image("RGB", (40, 30), seed=11))))
    local = encode(random_image("RGB", (32, 24), seed=12))
    batch = tmp_path / "batch"
    (batch / "pics").mkdir(parents=True)
    (batch / "pics" / "local.png").write_bytes(local)
    job_file = write_job(
        batch,
        {
            "images": [
                {"input": "pics/local.png", "output": "out/local.png"},  # relative to job.json's folder
                {"input": remote_id, "output": "out/remote.webp"},
            ],
            "operations": ["resize=50", "split=True"],
        },
    )

    # Act
    submitted = cli("jobs", "submit", str(job_file), key=alice.key)
    job_id = fields(ok(submitted))["job_id"]
    watched = cli("jobs", "watch", job_id, "--interval", "0.2", key=alice.key)
    shown = ok(cli("jobs", "get", job_id, key=alice.key))
    out = tmp_path / "downloads"
    got = cli("jobs", "get", job_id, "--out", str(out), key=alice.key)

    # Assert: the local file was uploaded and the job ran on it
    assert fields(submitted.stdout)["status_url"].endswith(f"/v1/jobs/{job_id}")
    assert "uploading 1 local file" in submitted.stderr and "uploaded: 1 new" in submitted.stderr
    assert fields(ok(watched))["status"] == "done"
    assert fields(watched.stdout)["items"] == "2: 2 done, 0 failed, 0 cancelled"
    job = gateway.get(f"/v1/jobs/{job_id}", headers=alice.headers).json()
    local_id = hashlib.sha256(local).hexdigest()  # an image's id is the SHA-256 of its bytes
    assert [(i["input"], i["image_id"]) for i in job["items"]] == [(local_id, local_id), (remote_id, remote_id)]
    table = rows(shown.split("\n\n")[1])
    assert [(r["INDEX"], r["INPUT"], r["STATE"]) for r in table] == [("0", local_id, "done"), ("1", remote_id, "done")]
    assert table[0]["OUTPUTS"] == ", ".join(f"out/local-{q}.png" for q in QUARTERS)
    # ...and get --out wrote every output, byte for byte what the API serves
    ok(got)
    names = [o["name"] for i in job["items"] for o in i["outputs"]]
    assert sorted(names) == sorted(
        [f"out/local-{q}.png" for q in QUARTERS] + [f"out/remote-{q}.webp" for q in QUARTERS]
    )
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted(names)
    for output in (o for i in job["items"] for o in i["outputs"]):
        served = gateway.get(output["url"], headers=alice.headers)
        assert served.status_code == 200
        assert (out / output["name"]).read_bytes() == served.content, output["name"]
    assert "downloaded 8 outputs" in got.stderr


def test_jobs_submit_watch_json_then_ls(cli, gateway, make_caller, tmp_path):
    alice = make_caller("team-a", "member")
    [image_id] = upload(gateway, alice, ("g.png", encode(random_image("RGB", seed=13))))
    job_file = write_job(tmp_path, {"images": [{"input": image_id, "output": "g.jpg"}], "operations": ["grayscale"]})

    finished = json.loads(
        ok(cli("--json", "jobs", "submit", str(job_file), "--watch", "--interval", "0.2", key=alice.key))
    )
    listed = rows(ok(cli("jobs", "ls", key=alice.key)))

    assert finished["status"] == "done" and finished["items"][0]["outputs"][0]["name"] == "g.jpg"
    assert [(r["JOB_ID"], r["STATUS"], r["TOTAL"], r["DONE"]) for r in listed] == [
        (finished["job_id"], "done", "1", "1")
    ]


def test_a_bad_job_shows_the_apis_message_and_exits_1(cli, gateway, make_caller, tmp_path):
    alice = make_caller("team-a", "member")
    [image_id] = upload(gateway, alice, ("b.png", encode(random_image("RGB", seed=14))))
    bad_op = write_job(
        tmp_path / "op", {"images": [{"input": image_id, "output": "a.png"}], "operations": ["frobnicate=1"]}
    )
    bad_out = write_job(tmp_path / "out", {"images": [{"input": image_id, "output": "../a.png"}], "operations": []})
    missing = write_job(tmp_path / "missing", {"images": [{"input": "0" * 64, "output": "a.png"}], "operations": []})

    assert "unknown operation" in failed(cli("jobs", "submit", str(bad_op), key=alice.key), 1, "error 400: ")
    assert "images[0]" in failed(cli("jobs", "submit", str(bad_out), key=alice.key), 1, "error 400: ")
    assert "not found" in failed(cli("jobs", "submit", str(missing), key=alice.key), 1, "error 404: images[0]")
    assert gateway.get("/v1/jobs", headers=alice.headers).json()["jobs"] == []


def test_a_local_file_the_api_refuses_stops_the_job(cli, gateway, make_caller, tmp_path):
    alice = make_caller("team-a", "member")
    (tmp_path / "notes.txt").write_text("not an image")
    job_file = write_job(tmp_path, {"images": [{"input": "notes.txt", "output": "n.png"}], "operations": []})

    stderr = failed(cli("jobs", "submit", str(job_file), key=alice.key), 1, "uploading 1 local file")

    assert "the job was not submitted" in stderr and "notes.txt: error 4" in stderr
    assert gateway.get("/v1/jobs", headers=alice.headers).json()["jobs"] == []


def test_a_cancelled_job_watches_to_a_non_zero_exit(cli, gateway, make_caller, tmp_path):
    alice = make_caller("team-a", "member")
    ids = upload(gateway, alice, *[(f"k{n}.png", encode(random_image("RGB", (800, 600), seed=n))) for n in range(12)])
    job_file = write_job(
        tmp_path,
        {"images": [{"input": i, "output": f"k/{n}.png"} for n, i in enumerate(ids)], "operations": ["blur=41"]},
    )
    job_id = json.loads(ok(cli("--json", "jobs", "submit", str(job_file), key=alice.key)))["job_id"]

    cancelled = cli("jobs", "cancel", job_id, key=alice.key)
    watched = cli("jobs", "watch", job_id, "--interval", "0.2", key=alice.key)

    assert fields(ok(cancelled))["job_id"] == job_id
    assert watched.exit_code == 1, watched.output
    status = fields(watched.stdout)["status"]
    assert status in ("cancelled", "partial")
    assert f"error: job {job_id} ended {status}: " in watched.stderr
    assert ": cancelled" in watched.stderr  # one line per item that did not run
    failed(cli("jobs", "watch", "job_" + "0" * 20, key=alice.key), 1, "error 404: ")


# -- search and reindex (S10) ----------------------------------------------------------


def test_reindex_re_embeds_an_old_models_image_once_and_search_finds_it(cli, gateway, make_caller, firestore_client):
    from aperture.storage.images import ImageStore

    # Arrange: two processed photos; one's embedding is made to look like an older model's
    alice = make_caller("team-a", "member")
    coffee, cat = upload(
        gateway, alice, ("coffee.jpg", skimage_photo("coffee.png")), ("chelsea.jpg", skimage_photo("chelsea.png"))
    )
    images = ImageStore(firestore_client)
    for image_id in (coffee, cat):
        assert settled(images, "team-a", image_id).status == "processed"
    model = gateway.get("/v1/search/model", headers=alice.headers).json()["embedding_model"]
    firestore_client.collection("images").document(f"team-a_{cat}").update({"embedding_model": "old:model"})
    before = images.get("team-a", cat)

    # Act
    first = cli("reindex", key=alice.key)
    second = cli("reindex", key=alice.key)
    found = cli("search", "cup of coffee", "--min-score", "-1", key=alice.key)

    # Assert: the old model's image was re-embedded, the current one left alone, then nothing to do
    done = fields(ok(first))
    assert (done["embedding_model"], done["images"], done["reembedded"], done["already_current"]) == (
        model,
        "2",
        "1",
        "1",
    )
    assert (done["not_processed"], done["failed"]) == ("0", "0")
    after = images.get("team-a", cat)
    assert after.embedding_model == model and len(after.embedding) == len(before.embedding)
    again = fields(ok(second))
    assert (again["to_reembed"], again["reembedded"], again["already_current"]) == ("0", "0", "2")
    # ...and search ranks the coffee photo first, the re-embedded cat among the results
    listed = rows(ok(found))
    assert [r["ID"] for r in listed] == [coffee, cat], listed
    assert listed[0]["FILENAME"] == "coffee.jpg" and float(listed[0]["SCORE"]) > float(listed[1]["SCORE"])
