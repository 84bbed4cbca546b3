"""The `aperture` CLI without a stack: where the URL and key come from, how
errors look, what is sent. HTTP goes to a fake opener (and, for redirects, a
server on the loopback interface)."""

from __future__ import annotations

import http.server
import io
import json
import threading
import urllib.error
from email.message import Message

import pytest
from click.testing import CliRunner

from aperture import cli

KEY = "apk_" + "k" * 43
CLEAN = {"APERTURE_URL": None, "GATEWAY_URL": None, "APERTURE_API_KEY": None, "DEMO_API_KEY": None}


class FakeAnswer(io.BytesIO):
    def __init__(self, status: int, body: bytes, headers: Message):
        super().__init__(body)
        self.status, self.headers = status, headers


class FakeOpener:
    """Records every request; answers `status` with `body`."""

    def __init__(self, status: int = 200, body: object = None, headers: dict | None = None):
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(body if body is not None else {}).encode()
        self.headers = Message()
        for name, value in (headers or {}).items():
            self.headers[name] = value
        self.requests = []

    def open(self, request, timeout):
        self.requests.append(request)
        if self.status >= 300:
            raise urllib.error.HTTPError(request.full_url, self.status, "Reason", self.headers, io.BytesIO(self.body))
        return FakeAnswer(self.status, self.body, self.headers)

    @property
    def last(self):
        return self.requests[-1]


@pytest.fixture
def opener(monkeypatch):
    fake = FakeOpener(body={"key_id": "key_1", "user_id": "usr_1", "team": "t", "role": "admin"})
    monkeypatch.setattr(cli, "_opener", fake)
    return fake


def invoke(*args: str, **env: str | None):
    return CliRunner().invoke(cli.main, list(args), env={**CLEAN, **env}, catch_exceptions=False)


# -- where the URL comes from ---------------------------------------------------------


@pytest.mark.parametrize(
    "env,args,expected",
    [
        ({}, [], "http://127.0.0.1:8080/v1/me"),
        ({"GATEWAY_URL": "http://gw:1"}, [], "http://gw:1/v1/me"),
        ({"GATEWAY_URL": "http://gw:1", "APERTURE_URL": "https://ap:2/"}, [], "https://ap:2/v1/me"),
        ({"GATEWAY_URL": "http://gw:1", "APERTURE_URL": ""}, [], "http://gw:1/v1/me"),  # empty counts as unset
        ({"APERTURE_URL": "http://ap:2"}, ["--url", "http://flag:3"], "http://flag:3/v1/me"),
    ],
)
def test_url_resolution(opener, env, args, expected):
    result = invoke(*args, "whoami", APERTURE_API_KEY=KEY, **env)

    assert result.exit_code == 0, result.output
    assert opener.last.full_url == expected


def test_command_level_options_override_the_global_ones(opener):
    result = invoke("--url", "http://global:1", "whoami", "--url", "http://local:2", "--json", APERTURE_API_KEY=KEY)

    assert result.exit_code == 0, result.output
    assert opener.last.full_url == "http://local:2/v1/me"
    assert json.loads(result.stdout)["key_id"] == "key_1"


def test_absent_command_level_options_keep_the_global_ones(opener):
    result = invoke("--url", "http://global:1", "--json", "whoami", APERTURE_API_KEY=KEY)

    assert opener.last.full_url == "http://global:1/v1/me"
    assert json.loads(result.stdout)["team"] == "t"


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "ftp://host", "http://", "http://h/?x=1"])
def test_a_bad_url_exits_2(opener, url):
    result = invoke("--url", url, "whoami", APERTURE_API_KEY=KEY)

    assert result.exit_code == 2
    assert result.stderr.startswith("error: --url")
    assert opener.requests == []


# -- where the key comes from --------------------------------------------------------


@pytest.mark.parametrize(
    "env,args,expected",
    [
        ({"DEMO_API_KEY": "apk_demo_demo_demo_demo_demo"}, [], "apk_demo_demo_demo_demo_demo"),
        ({"DEMO_API_KEY": "apk_demo_demo_demo_demo_demo", "APERTURE_API_KEY": KEY}, [], KEY),
        ({"APERTURE_API_KEY": "apk_env_env_env_env_env_env"}, ["--key", KEY], KEY),
        ({"APERTURE_API_KEY": f"  {KEY}\n"}, [], KEY),  # pasted with whitespace
    ],
)
def test_key_resolution(opener, env, args, expected):
    result = invoke(*args, "whoami", **env)

    assert result.exit_code == 0, result.output
    assert opener.last.get_header("X-api-key") == expected
    assert expected not in result.output


@pytest.mark.parametrize("env", [{}, {"APERTURE_API_KEY": "   "}, {"APERTURE_API_KEY": "", "DEMO_API_KEY": ""}])
def test_no_key_exits_2_with_a_clear_message(opener, env):
    result = invoke("keys", "list", **env)

    assert result.exit_code == 2
    assert result.stderr.startswith("error: no API key: pass --key or set APERTURE_API_KEY")
    assert opener.requests == []


def test_a_key_that_cannot_be_a_header_is_refused_without_echoing_it(opener):
    secret = "apk_secret with space"
    result = invoke("--key", secret, "whoami")

    assert result.exit_code == 2
    assert secret not in result.output and "secret" not in result.output
    assert opener.requests == []


def test_bootstrap_needs_no_key_and_validates_before_firestore(monkeypatch):
    monkeypatch.setattr(cli, "_bootstrap", lambda *a, **k: pytest.fail("must not reach Firestore"))

    result = invoke("bootstrap", "--team", "X", "--email", "a@b.example")

    assert result.exit_code == 2 and "--team" in result.stderr


# -- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status,body,expected",
    [
        (
            403,
            {"error": {"code": 403, "message": "this route needs the admin role"}},
            "error 403: this route needs the admin role",
        ),
        (502, b"<html><body>Bad\n gateway</body></html>", "error 502: <html><body>Bad gateway</body></html>"),
        (500, b"", "error 500: Reason"),
        (404, {"error": "flat"}, 'error 404: {"error": "flat"}'),
    ],
)
def test_http_errors_print_status_and_message_and_exit_1(monkeypatch, status, body, expected):
    monkeypatch.setattr(cli, "_opener", FakeOpener(status, body))

    result = invoke("teams", "list", APERTURE_API_KEY=KEY)

    assert result.exit_code == 1
    assert result.stderr.strip() == expected
    assert result.stdout == ""
    assert KEY not in result.output


def test_network_failure_exits_1(monkeypatch):
    class Refusing:
        def open(self, request, timeout):
            raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(cli, "_opener", Refusing())

    result = invoke("--url", "http://127.0.0.1:1", "whoami", APERTURE_API_KEY=KEY)

    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach http://127.0.0.1:1: ")


def test_redirects_are_not_followed(monkeypatch):
    """A 30x would carry the key to wherever Location points: it is an error."""
    seen = []

    class Redirecting(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            self.send_response(302)
            self.send_header("Location", "http://elsewhere.invalid/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Redirecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = invoke("--url", f"http://127.0.0.1:{server.server_port}", "whoami", APERTURE_API_KEY=KEY)
    finally:
        server.shutdown()
        server.server_close()

    assert result.exit_code == 1
    assert result.stderr.strip() == "error 302: redirected to http://elsewhere.invalid/steal; use that as --url"
    assert seen == ["/v1/me"]


# -- what is sent ----------------------------------------------------------------------


def test_create_commands_send_json_bodies(opener):
    invoke("teams", "create", "acme", "--name", "Acme", "--gps", APERTURE_API_KEY=KEY)
    assert (opener.last.get_method(), opener.last.full_url) == ("POST", "http://127.0.0.1:8080/v1/teams")
    assert opener.last.get_header("Content-type") == "application/json"
    assert json.loads(opener.last.data) == {"team_id": "acme", "gps_enabled": True, "name": "Acme"}

    invoke("users", "create", "--team", "acme", "a@acme.example", APERTURE_API_KEY=KEY)
    assert opener.last.full_url.endswith("/v1/teams/acme/users")
    assert json.loads(opener.last.data) == {"email": "a@acme.example", "role": "member"}

    invoke("keys", "create", "usr_1", APERTURE_API_KEY=KEY)
    assert json.loads(opener.last.data) == {"user_id": "usr_1"}


def test_ids_stay_one_path_segment(opener):
    invoke("keys", "revoke", "../teams?x=1", APERTURE_API_KEY=KEY)
    assert (opener.last.get_method(), opener.last.full_url) == (
        "DELETE",
        "http://127.0.0.1:8080/v1/keys/..%2Fteams%3Fx%3D1",
    )

    invoke("keys", "list", "--team", "a b&c", APERTURE_API_KEY=KEY)
    assert opener.last.full_url == "http://127.0.0.1:8080/v1/keys?team=a+b%26c"


def test_users_default_to_the_keys_team(opener):
    invoke("users", "list", APERTURE_API_KEY=KEY)

    assert [r.full_url for r in opener.requests] == [
        "http://127.0.0.1:8080/v1/me",
        "http://127.0.0.1:8080/v1/teams/t/users",
    ]


# -- output ---------------------------------------------------------------------------


def test_table_aligns_and_formats_cells():
    text = cli.table(
        [{"a": "x", "b": None, "c": True}, {"a": "longer", "b": "2024-05-01T10:20:30.123456Z", "c": False}],
        [("a", "a"), ("b", "b"), ("c", "c")],
    )

    assert text.splitlines() == [
        "A       B                     C",
        "x       -                     yes",
        "longer  2024-05-01 10:20:30Z  no",
    ]


def test_key_listing_shows_status_not_secrets(monkeypatch):
    keys = {
        "keys": [
            {
                "key_id": "key_a",
                "prefix": "apk_abcd…",
                "user_id": "usr_1",
                "role": "admin",
                "created_at": "2024-01-01T00:00:00Z",
                "last_used_at": None,
                "revoked_at": None,
            },
            {
                "key_id": "key_b",
                "prefix": "apk_efgh…",
                "user_id": "usr_2",
                "role": "member",
                "created_at": "2024-01-02T00:00:00Z",
                "last_used_at": "2024-01-03T00:00:00Z",
                "revoked_at": "2024-01-04T00:00:00Z",
            },
        ]
    }
    monkeypatch.setattr(cli, "_opener", FakeOpener(200, keys))

    lines = invoke("keys", "list", APERTURE_API_KEY=KEY).stdout.splitlines()

    assert lines[0].split() == ["KEY_ID", "PREFIX", "USER_ID", "ROLE", "CREATED", "LAST_USED", "STATUS"]
    assert lines[1].split()[-1] == "active"
    assert lines[2].endswith("revoked 2024-01-04 00:00:00Z")


def test_empty_listing(monkeypatch):
    monkeypatch.setattr(cli, "_opener", FakeOpener(200, {"teams": []}))

    assert invoke("teams", "list", APERTURE_API_KEY=KEY).stdout == "no teams\n"
