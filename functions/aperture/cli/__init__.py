"""`aperture`: the operator CLI (spec S5, S9, S11; usage in docs/cli.md).

Every command but `bootstrap` goes through the HTTP API with an API key, using
one small client (`ApiClient`); new commands (upload a folder, search, stats)
are a function that calls `settings.client().request(...)` and prints with
`output(...)`. `bootstrap` writes to Firestore directly: it makes the first key,
when no key exists yet to call the API with. This module holds the shared
parts and the identity commands (teams, users, keys, whoami, bootstrap);
`aperture.cli.jobs` adds the `jobs` group (batch jobs, spec S9), `aperture.cli.search`
the `search` and `reindex` commands (semantic search, spec S10), `aperture.cli.images`
`upload`, the `images` group, `get` and `stats` (spec S6, S8); `aperture.cli._retry` is
the retry helper they share.

Exit codes: 0 done, 1 the API (or the network, or Firestore) refused, or a
watched job did not end `done`, or an upload had a rejected file; 2 the command line or configuration is wrong
(no key, bad URL, bad option, a job file that is not JSON).
Keys are never printed, except the one a command has just created.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import click

DEFAULT_URL = "http://127.0.0.1:8080"
URL_ENV = ("APERTURE_URL", "GATEWAY_URL")
KEY_ENV = ("APERTURE_API_KEY", "DEMO_API_KEY")
KEY_HEADER = "x-api-key"
DEFAULT_TIMEOUT = 60.0
ONCE_NOTE = "This key is shown only once (only its hash is stored): keep it now."

try:
    VERSION = metadata.version("aperture")
except metadata.PackageNotFoundError:  # run from the source tree without `pip install -e .`
    VERSION = "0.1.0+source"


# -- errors -----------------------------------------------------------------------


class CliError(click.ClickException):
    """A message for stderr, printed as-is, and an exit code (1 by default)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(self.format_message(), err=True)


class ConfigError(CliError):
    """Wrong or missing configuration: exit 2, like a usage error."""

    def __init__(self, message: str):
        super().__init__(f"error: {message}", exit_code=2)


class ApiError(CliError):
    """A non-2xx answer from the API: `error STATUS: MESSAGE`, exit 1."""

    def __init__(self, status: int, message: str):
        super().__init__(f"error {status}: {message}", exit_code=1)
        self.status = status
        self.api_message = message

    @classmethod
    def from_response(cls, status: int, body: bytes, reason: str = "") -> ApiError:
        """The `{"error": {"code", "message"}}` body's message, else what there is."""
        text = body.decode("utf-8", "replace").strip()
        try:
            message = json.loads(text)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = None
        if not isinstance(message, str) or not message:
            message = " ".join(text.split())[:300] or reason or "no message"
        return cls(status, message)


# -- HTTP -------------------------------------------------------------------------


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following one would send the key to another place."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401, N802
        return None


_opener = urllib.request.build_opener(_NoRedirects())


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    reason: str = ""


class ApiClient:
    """The Aperture HTTP API at `base_url`, called with one API key."""

    def __init__(self, base_url: str, key: str, *, timeout: float = DEFAULT_TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self._key = key
        self.timeout = timeout

    def __repr__(self) -> str:  # never show the key, even in a traceback
        return f"ApiClient({self.base_url!r})"

    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        return self.base_url + path + ("?" + urllib.parse.urlencode(query) if query else "")

    def request(self, method: str, path: str, json: Any = None, *, params: Mapping[str, Any] | None = None) -> Any:
        """The decoded JSON answer (None when empty); `ApiError` for any non-2xx."""
        body, headers = None, {"Accept": "application/json"}
        if json is not None:
            body, headers["Content-Type"] = _dumps(json).encode(), "application/json"
        response = self.send(method, path, body, headers=headers, params=params)
        if response.status >= 300:
            raise ApiError.from_response(response.status, response.body, _redirect_note(response) or response.reason)
        if not response.body.strip():
            return None
        try:
            return _loads(response.body)
        except ValueError:
            raise CliError(f"error: {method} {path} answered {response.status} with a body that is not JSON") from None

    def send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Response:
        """One request, any body (for uploads); any status comes back, network failures raise."""
        request = self._request(method, path, body, headers, params)
        try:
            with _opener.open(request, timeout=self.timeout) as answer:
                return Response(answer.status, answer.headers, answer.read(), getattr(answer, "reason", ""))
        except urllib.error.HTTPError as exc:
            with exc:
                return Response(exc.code, exc.headers, exc.read(), str(exc.reason or ""))
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, cut answers
            raise self._unreachable(exc) from None

    def open_download(self, path: str):
        """GET `path` as a stream of bytes (a file-like answer to close): the API's body, or, for a
        307 to a signed storage URL (a body over the gateway's limit), that URL's, fetched without
        the key. `ApiError` for any other non-2xx."""
        request = self._request("GET", path, None, {"Accept": "*/*"}, None)
        try:
            return _opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                response = Response(exc.code, exc.headers, exc.read(), str(exc.reason or ""))
            link = response.headers.get("Location") or ""
            if response.status == 307 and link.startswith(("https://", "http://")):
                return self._open_signed(link)
            raise ApiError.from_response(
                response.status, response.body, _redirect_note(response) or response.reason
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None

    def download(self, path: str, dest: Path, *, chunk: int = 1 << 20) -> int:
        """GET `path` into the file `dest`, streamed through a temporary file beside it (so an
        interrupted download never leaves a partial file under the final name); the byte count.
        `ApiError` for any non-2xx; `OSError` when `dest` cannot be written."""
        answer = self.open_download(path)
        partial = dest.with_name(f".{dest.name}.part")
        try:
            with answer, open(partial, "wb") as file:
                size = self.copy(answer, file, chunk=chunk)
            os.replace(partial, dest)
        finally:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
        return size

    def copy(self, answer: Any, out: Any, *, chunk: int = 1 << 20) -> int:
        """The rest of a download's body written to the binary file `out`; the byte count."""
        size = 0
        while True:
            try:
                block = answer.read(chunk)
            except (OSError, http.client.HTTPException) as exc:
                raise self._unreachable(exc) from None
            if not block:
                return size
            out.write(block)
            size += len(block)

    def _open_signed(self, link: str):
        """GET a signed storage URL (no API key, no redirects); ApiError for a non-2xx answer."""
        request = urllib.request.Request(link, headers={"User-Agent": f"aperture-cli/{VERSION}"}, method="GET")
        try:
            return _opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                raise ApiError.from_response(exc.code, exc.read(), f"signed download link: {exc.reason}") from None

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        params: Mapping[str, Any] | None,
    ) -> urllib.request.Request:
        all_headers = {"User-Agent": f"aperture-cli/{VERSION}", **(headers or {}), KEY_HEADER: self._key}
        return urllib.request.Request(self.url(path, params), data=body, headers=all_headers, method=method)

    def _unreachable(self, exc: BaseException) -> CliError:
        if isinstance(exc, urllib.error.URLError):
            return CliError(f"error: cannot reach {self.base_url}: {exc.reason}")
        if isinstance(exc, TimeoutError):
            return CliError(f"error: {self.base_url} did not answer within {self.timeout:g} s")
        return CliError(f"error: cannot reach {self.base_url}: {exc}")


def _redirect_note(response: Response) -> str:
    location = response.headers.get("Location") if 300 <= response.status < 400 else None
    return f"redirected to {location}; use that as --url" if location else ""


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_jsonable)


def _loads(raw: bytes) -> Any:
    return json.loads(raw.decode("utf-8"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def segment(value: str) -> str:
    """One path segment, quoted: an id can never add a segment or a query."""
    return urllib.parse.quote(value, safe="")


# -- settings -----------------------------------------------------------------------


@dataclass
class Settings:
    """Global options, filled by the top-level options and (overriding) the command's."""

    url: str = DEFAULT_URL
    key: str | None = None
    json: bool = False
    timeout: float = DEFAULT_TIMEOUT

    def client(self) -> ApiClient:
        return ApiClient(check_url(self.url), check_key(self.key), timeout=self.timeout)


def check_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"--url must be an http:// or https:// URL, not {url!r}")
    if parsed.query or parsed.fragment:
        raise ConfigError("--url must not have a query or fragment")
    return url.strip().rstrip("/")


def check_key(key: str | None) -> str:
    key = (key or "").strip()
    if not key:
        raise ConfigError(
            f"no API key: pass --key or set {KEY_ENV[0]} ({KEY_ENV[1]} from .aperture/local.env also works)"
        )
    if not re.fullmatch(r"[\x21-\x7e]+", key):  # never echo it: it may be a real key with a typo
        raise ConfigError("the API key has characters that cannot be sent in a header (spaces, non-ASCII)")
    return key


def _settings(ctx: click.Context) -> Settings:
    return ctx.ensure_object(Settings)


def _set(field: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None and value is not False:  # an absent command-level option keeps the global one
            setattr(_settings(ctx), field, value)

    return callback


def global_params(top_level: bool) -> list[click.Option]:
    """--url, --key, --json, --timeout: on `aperture` itself (with environment
    variables and defaults) and again on every command (without: an absent
    command-level option keeps the global value), so both
    `aperture --json keys list` and `aperture keys list --json` work."""
    top = (lambda value: value) if top_level else (lambda value: None)
    return [
        click.Option(
            ["--url"],
            metavar="URL",
            envvar=top(list(URL_ENV)),
            default=top(DEFAULT_URL),
            show_envvar=top_level,
            show_default=top_level,
            expose_value=False,
            callback=_set("url"),
            help="Gateway URL.",
        ),
        click.Option(
            ["--key"],
            metavar="KEY",
            envvar=top(list(KEY_ENV)),
            show_envvar=top_level,
            expose_value=False,
            callback=_set("key"),
            help="API key sent as x-api-key (prefer the environment variable).",
        ),
        click.Option(
            ["--json", "json_output"],
            is_flag=True,
            default=False,
            expose_value=False,
            callback=_set("json"),
            help="Print the API's JSON instead of a table.",
        ),
        click.Option(
            ["--timeout"],
            type=click.FloatRange(min=0, min_open=True),
            metavar="SECONDS",
            default=top(DEFAULT_TIMEOUT),
            show_default=top_level,
            expose_value=False,
            callback=_set("timeout"),
            help="Seconds to wait for each answer.",
        ),
    ]


class Group(click.Group):
    """Commands get the global options too (after their own), and are listed in definition order."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable], click.Command]:
        make = super().command(*args, **kwargs)

        def decorate(func: Callable) -> click.Command:
            command = make(func)
            command.params.extend(global_params(top_level=False))
            return command

        return decorate

    def group(self, *args: Any, **kwargs: Any) -> Callable[[Callable], click.Group]:
        kwargs.setdefault("cls", Group)
        return super().group(*args, **kwargs)


pass_settings = click.make_pass_decorator(Settings, ensure=True)


# -- output -------------------------------------------------------------------------

_ISO = re.compile(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})")


def cell(value: Any) -> str:
    """How one value looks in a table."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        value = _jsonable(value)
    text = str(value)
    match = _ISO.fullmatch(text)
    if match:
        return f"{match[1]} {match[2]}{match[3]}"
    return " ".join(text.split())  # one line per row, whatever the value holds


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str | Callable[[Mapping], Any]]]) -> str:
    """Aligned columns; `columns` are (heading, field name or function of the row)."""
    cells = [[h.upper() for h, _ in columns]]
    for row in rows:
        cells.append([cell(get(row) if callable(get) else row.get(get)) for _, get in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def fields(record: Mapping[str, Any], names: Iterable[tuple[str, str]]) -> str:
    """A record as `label  value` lines."""
    pairs = [(label, cell(record.get(name))) for label, name in names]
    width = max(len(label) for label, _ in pairs)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in pairs)


def output(settings: Settings, data: Any, render: Callable[[Any], str]) -> None:
    click.echo(json.dumps(data, indent=2, default=_jsonable) if settings.json else render(data))


def listing(settings: Settings, data: Mapping[str, Any], field: str, columns, empty: str) -> None:
    def render(d):
        rows = d.get(field) or []
        return table(rows, columns) if rows else empty

    output(settings, data, render)


TEAM_COLUMNS = [("team", "team_id"), ("name", "name"), ("gps", "gps_enabled"), ("created", "created_at")]
USER_COLUMNS = [
    ("user_id", "user_id"),
    ("team", "team"),
    ("email", "email"),
    ("role", "role"),
    ("created", "created_at"),
]


def key_status(key: Mapping[str, Any]) -> str:
    return "revoked " + cell(key["revoked_at"]) if key.get("revoked_at") else "active"


KEY_COLUMNS = [
    ("key_id", "key_id"),
    ("prefix", "prefix"),
    ("user_id", "user_id"),
    ("role", "role"),
    ("created", "created_at"),
    ("last_used", "last_used_at"),
    ("status", key_status),
]


# -- commands ----------------------------------------------------------------------


@click.group(
    cls=Group,
    params=global_params(top_level=True),
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(VERSION, prog_name="aperture")
def main() -> None:
    """Operate Aperture: teams, users, API keys, images, batch jobs and search.

    Every command but `bootstrap` calls the HTTP API at --url with the API key
    from --key. Run `aperture COMMAND --help` for a command's options.
    """


@main.command()
@pass_settings
def whoami(settings: Settings) -> None:
    """Who the API key belongs to (key id, user, team, role)."""
    me = settings.client().request("GET", "/v1/me")
    output(
        settings,
        me,
        lambda d: fields(d, [("key_id", "key_id"), ("user_id", "user_id"), ("team", "team"), ("role", "role")]),
    )


# bootstrap -------------------------------------------------------------------------


@main.command()
@click.option("--team", required=True, help="Team id (created if missing).")
@click.option("--email", required=True, help="E-mail of the new user.")
@click.option(
    "--role",
    type=click.Choice(["owner", "admin", "member"]),
    default="owner",
    show_default=True,
    help="Role of the new user (owner: the platform owner, who manages teams).",
)
@click.option("--project", metavar="PROJECT_ID", help="Google Cloud project [default: GOOGLE_CLOUD_PROJECT].")
@click.option(
    "--issuer",
    type=click.Choice(["local", "google"]),
    help="Who makes the key string [default: APERTURE_KEY_ISSUER, else local].",
)
@click.option(
    "--api-service",
    metavar="SERVICE",
    help="API Gateway managed service a google key is restricted to [default: APERTURE_API_SERVICE].",
)
@pass_settings
def bootstrap(
    settings: Settings,
    team: str,
    email: str,
    role: str,
    project: str | None,
    issuer: str | None,
    api_service: str | None,
) -> None:
    """Create a team, a user in it and their first key, directly in Firestore.

    For the first owner, when no key exists yet to call the API with: needs
    Firestore access (application-default credentials, or
    FIRESTORE_EMULATOR_HOST for the local stack). Prints the key once.
    """
    import dataclasses
    import os

    from aperture.config import Config
    from aperture.domain.records import EMAIL, TEAM_ID, TEAM_ID_RULE  # the API's own rules for ids and e-mails

    if not TEAM_ID.fullmatch(team):
        raise ConfigError(f"--team must be {TEAM_ID_RULE}")
    if not EMAIL.fullmatch(email) or len(email) > 254:
        raise ConfigError("--email is not an e-mail address")
    try:
        config = Config.from_env()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    overrides = {"project": project, "key_issuer": issuer, "api_service": api_service}
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v})
    emulator = os.environ.get("FIRESTORE_EMULATOR_HOST")
    _announce_target(config, emulator)

    try:
        team_record, user, key, secret = _bootstrap(config, team=team, email=email, role=role)
    except CliError:
        raise
    except ImportError as exc:
        hint = " (pip install google-cloud-api-keys)" if config.key_issuer == "google" else ""
        raise CliError(f"error: {exc.name or exc} is not installed{hint}") from None
    except Exception as exc:  # google.api_core errors, credentials, the API Keys API
        raise CliError(f"error: bootstrap failed: {type(exc).__name__}: {exc}") from None

    result = {
        "team_id": team_record.team_id,
        "team_name": team_record.name,
        "user_id": user.user_id,
        "email": user.email,
        "role": user.role,
        "key_id": key.key_id,
        "issuer": key.issuer,
        "key": secret,
    }
    output(
        settings,
        result,
        lambda d: fields(
            d,
            [
                ("team", "team_id"),
                ("user_id", "user_id"),
                ("email", "email"),
                ("role", "role"),
                ("key_id", "key_id"),
                ("key", "key"),
            ],
        ),
    )
    click.echo(ONCE_NOTE, err=True)


def _announce_target(config, emulator: str | None) -> None:
    if emulator:
        click.echo(f"Firestore emulator at {emulator}, project {config.project}", err=True)
        _check_reachable(emulator)
    else:
        click.echo(f"Firestore of Google Cloud project {config.project} (application-default credentials)", err=True)
        if config.key_issuer == "local":
            click.echo(
                "warning: a local key does not pass API Gateway's key check in the cloud; "
                "use --issuer google --api-service SERVICE there",
                err=True,
            )


def _check_reachable(host_port: str) -> None:
    """Fail in a second, not after the client library's minute of retries."""
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=3):
            pass
    except (OSError, ValueError) as exc:
        raise CliError(
            f"error: cannot reach the Firestore emulator at {host_port} ({exc}); is the local stack running (make run)?"
        ) from None


def _bootstrap(config, *, team: str, email: str, role: str):
    from aperture.container import Container
    from aperture.services import provisioning

    parts = Container(config)
    issuer = parts.key_issuer  # fails before any write
    return provisioning.bootstrap(parts.identity, issuer, team_id=team, email=email, role=role)


# teams -----------------------------------------------------------------------------


@main.group()
def teams() -> None:
    """Teams (the platform owner only)."""


@teams.command("list")
@pass_settings
def teams_list(settings: Settings) -> None:
    """All teams."""
    listing(settings, settings.client().request("GET", "/v1/teams"), "teams", TEAM_COLUMNS, "no teams")


@teams.command("create")
@click.argument("team_id")
@click.option("--name", help="Display name [default: TEAM_ID].")
@click.option(
    "--gps/--no-gps", default=False, show_default=True, help="Keep GPS coordinates from EXIF (off: they are stripped)."
)
@pass_settings
def teams_create(settings: Settings, team_id: str, name: str | None, gps: bool) -> None:
    """Create team TEAM_ID (3-40 of a-z, 0-9 and '-', starting with a letter)."""
    body = {"team_id": team_id, "gps_enabled": gps}
    if name is not None:
        body["name"] = name
    team = settings.client().request("POST", "/v1/teams", body)
    output(settings, team, lambda d: table([d], TEAM_COLUMNS))


# users -----------------------------------------------------------------------------


@main.group()
def users() -> None:
    """Users of a team (its admins, or the owner)."""


def _team_or_own(client: ApiClient, team: str | None) -> str:
    return team if team else client.request("GET", "/v1/me")["team"]


@users.command("list")
@click.option("--team", help="Team id [default: the key's team].")
@pass_settings
def users_list(settings: Settings, team: str | None) -> None:
    """Users of a team."""
    client = settings.client()
    data = client.request("GET", f"/v1/teams/{segment(_team_or_own(client, team))}/users")
    listing(settings, data, "users", USER_COLUMNS, "no users")


@users.command("create")
@click.argument("email")
@click.option("--team", help="Team id [default: the key's team].")
@click.option("--role", type=click.Choice(["member", "admin"]), default="member", show_default=True)
@pass_settings
def users_create(settings: Settings, email: str, team: str | None, role: str) -> None:
    """Add a user with EMAIL to a team (then give them a key: `aperture keys create USER_ID`)."""
    client = settings.client()
    user = client.request(
        "POST", f"/v1/teams/{segment(_team_or_own(client, team))}/users", {"email": email, "role": role}
    )
    output(settings, user, lambda d: table([d], USER_COLUMNS))


# keys ------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """API keys (a team's admins, or the owner; anyone may revoke their own)."""


@keys.command("list")
@click.option("--team", help="Team id (the owner only) [default: the key's team].")
@pass_settings
def keys_list(settings: Settings, team: str | None) -> None:
    """Keys of a team, revoked ones included (never the key strings)."""
    data = settings.client().request("GET", "/v1/keys", params={"team": team})
    listing(settings, data, "keys", KEY_COLUMNS, "no keys")


@keys.command("create")
@click.argument("user_id")
@click.option("--name", help="Label shown in lists (at most 60 characters) [default: TEAM/EMAIL].")
@pass_settings
def keys_create(settings: Settings, user_id: str, name: str | None) -> None:
    """Create a key for USER_ID and print it, once."""
    body = {"user_id": user_id}
    if name is not None:
        body["name"] = name
    key = settings.client().request("POST", "/v1/keys", body)
    output(
        settings,
        key,
        lambda d: fields(
            d,
            [
                ("key_id", "key_id"),
                ("user_id", "user_id"),
                ("team", "team"),
                ("role", "role"),
                ("prefix", "prefix"),
                ("key", "key"),
            ],
        ),
    )
    click.echo(ONCE_NOTE, err=True)


@keys.command("revoke")
@click.argument("key_id")
@pass_settings
def keys_revoke(settings: Settings, key_id: str) -> None:
    """Revoke KEY_ID: it stops working at once (revoking twice is harmless)."""
    key = settings.client().request("DELETE", f"/v1/keys/{segment(key_id)}")
    output(settings, key, lambda d: table([d], KEY_COLUMNS))


# jobs, search and images (aperture/cli/jobs.py registers the `jobs` group on `main`,
# aperture/cli/search.py the `search` and `reindex` commands, aperture/cli/images.py
# `upload`, the `images` group, `get` and `stats`) ---------------------------------------

from aperture.cli import images as _images  # noqa: E402, F401  (upload, images, get, stats)
from aperture.cli import jobs as _jobs  # noqa: E402, F401  (last: they import the helpers above)
from aperture.cli import search as _search  # noqa: E402, F401

if __name__ == "__main__":
    main()
