"""Signed links (aperture.domain.links): what is signed, what is refused and why."""

from __future__ import annotations

import datetime as dt
import urllib.parse

import pytest

from aperture.domain.links import LINK_PARAMS, LinkRefused, Links

NOW = dt.datetime(2026, 12, 3, 12, 30, tzinfo=dt.timezone.utc)
PATH = "/v1/images/" + "a" * 64 + ".png"


def links(secret: bytes = b"s" * 32, now: dt.datetime = NOW, window: int = 3600) -> Links:
    return Links(secret, window=window, clock=lambda: now)


def split(link: str) -> tuple[str, list[tuple[str, str]]]:
    parts = urllib.parse.urlsplit(link)
    return urllib.parse.unquote(parts.path), urllib.parse.parse_qsl(parts.query, keep_blank_values=True)


def test_a_signed_link_verifies_and_names_its_team_and_expiry():
    signer = links()
    link = signer.sign(PATH, [("ops", "resize:64x64|rotate:90")], "acme")

    path, params = split(link)
    grant = signer.verify("GET", path, params)

    assert grant.team == "acme"
    assert [name for name, _ in params] == ["ops", "team", "exp", "sig"]
    assert grant.expires == int(dict(params)["exp"])


def test_expiries_are_rounded_to_the_window_so_a_page_lists_the_same_urls():
    first = links(now=NOW).sign(PATH, [], "acme")
    later = links(now=NOW + dt.timedelta(minutes=20)).sign(PATH, [], "acme")

    assert first == later
    expires = int(dict(split(first)[1])["exp"])
    assert 3600 <= expires - NOW.timestamp() <= 7200


@pytest.mark.parametrize(
    "tamper",
    [
        lambda path, params: (path.replace("png", "jpg"), params),
        lambda path, params: (path.replace("a" * 64, "b" * 64), params),
        lambda path, params: (path, [("ops", "resize:2000x2000")] + params[1:]),
        lambda path, params: (path, [p if p[0] != "team" else ("team", "other") for p in params]),
        lambda path, params: (path, [p if p[0] != "exp" else ("exp", str(int(p[1]) + 3600)) for p in params]),
        lambda path, params: (path, [p if p[0] != "sig" else ("sig", p[1][:-1] + "A") for p in params]),
        lambda path, params: (path, params[1:]),  # an operation dropped
        lambda path, params: (path, [("grayscale", "1"), *params]),  # one added
    ],
    ids=["format", "image", "ops", "team", "exp", "sig", "drop-op", "add-op"],
)
def test_any_change_to_path_ops_team_expiry_or_signature_is_refused(tamper):
    signer = links()
    path, params = split(signer.sign(PATH, [("ops", "resize:64x64")], "acme"))

    with pytest.raises(LinkRefused) as refused:
        signer.verify("GET", *tamper(path, params))

    assert refused.value.status == 403


def test_reordered_single_parameter_operations_are_refused():
    signer = links()
    path, params = split(signer.sign(PATH, [("crop", "0,0,10,10"), ("rotate", "90")], "acme"))

    with pytest.raises(LinkRefused):
        signer.verify("GET", path, [params[1], params[0], *params[2:]])


def test_an_expired_link_is_refused_with_when_it_expired():
    path, params = split(links(now=NOW).sign(PATH, [], "acme"))

    with pytest.raises(LinkRefused, match="expired at 2026-12-03T14:00:00"):
        links(now=NOW + dt.timedelta(hours=3)).verify("GET", path, params)


def test_a_link_made_with_another_secret_is_refused():
    path, params = split(links(secret=b"x" * 32).sign(PATH, [], "acme"))

    with pytest.raises(LinkRefused, match="signature does not match"):
        links().verify("GET", path, params)


@pytest.mark.parametrize(
    "params",
    [
        [("team", "acme"), ("exp", "9999999999")],
        [("team", "acme"), ("sig", "x")],
        [("exp", "9999999999"), ("sig", "x")],
        [("team", "acme"), ("exp", "9999999999"), ("sig", "x"), ("sig", "y")],
        [("team", "acme"), ("team", "b"), ("exp", "9999999999"), ("sig", "x")],
        [("team", "acme"), ("exp", "soon"), ("sig", "x")],
        [("team", "acme"), ("exp", "-5"), ("sig", "x")],
        [("team", "acme"), ("exp", "١٢٣"), ("sig", "x")],  # Unicode digits
        [("team", "acme"), ("exp", "9999999999"), ("sig", "ü" * 43)],
    ],
)
def test_malformed_link_parameters_are_refused_not_crashed(params):
    with pytest.raises(LinkRefused):
        links().verify("GET", PATH, params)


def test_a_link_is_only_good_for_get_and_head():
    signer = links()
    path, params = split(signer.sign(PATH, [], "acme"))

    assert signer.verify("HEAD", path, params).team == "acme"
    with pytest.raises(LinkRefused):
        signer.verify("DELETE", path, params)


def test_names_with_spaces_and_slashes_sign_and_verify_after_decoding():
    signer = links()
    link = signer.sign("/v1/jobs/j1/outputs/dir/my photo+1.png", [], "acme")

    assert " " not in link and "%20" in link
    path, params = split(link)
    assert signer.verify("GET", path, params).team == "acme"


def test_the_link_parameters_cannot_be_passed_in_by_the_caller():
    with pytest.raises(ValueError):
        links().sign(PATH, [("team", "other")], "acme")
    assert LINK_PARAMS == {"team", "exp", "sig"}


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError):
        Links(b"short")
