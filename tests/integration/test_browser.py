"""The web page (/app) and Swagger UI (/docs) in a real browser: Debian's chromium driven by
Playwright against the local stack, through the gateway like any user. Screenshots go to
test-artifacts/screenshots/."""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from PIL import Image
from playwright.sync_api import expect, sync_playwright

from tests.integration.browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    drop_files,
    photo,
    shot,
    tab_to,
    wait_processed,
)

pytestmark = pytest.mark.skipif(not __import__("os").path.exists(CHROMIUM), reason=f"{CHROMIUM} missing (make browser)")

CAT = ("chelsea.png", "image/png", photo("chelsea.png", "PNG"))
COFFEE = ("coffee.jpg", "image/jpeg", photo("coffee.png", "JPEG"))
ROCKET = ("rocket.jpg", "image/jpeg", photo("rocket.jpg", "JPEG"))
CAT_SIZE = Image.open(io.BytesIO(CAT[2])).size


# The page waits on a stack busy with the rest of the suite (processing, two cores):
# assertions poll up to 20 s rather than Playwright's default 5 s.
expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, stack, request):
    context = browser.new_context(base_url=stack.gateway_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    yield page
    shot(page, f"last-{request.node.name}")  # the state a failure left, to look at
    context.close()
    assert not problems, problems


def enter_key(page, key: str) -> None:
    page.goto("/app#/gallery")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Use this key").click()


def test_the_page_and_swagger_ui_answer_without_a_key(gateway):
    for path, kind in [
        ("/app", "text/html"),
        ("/app/app.js", "text/javascript"),
        ("/docs", "text/html"),
        ("/docs/swagger-ui-bundle.js", "text/javascript"),
        ("/openapi.json", "application/json"),
    ]:
        response = gateway.get(path)
        assert response.status_code == 200, (path, response.text[:200])
        assert response.headers["Content-Type"].startswith(kind)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert gateway.get("/openapi.json").json()["schemes"] == ["http"]
    assert gateway.get("/app/..%2Fopenapi.yaml").status_code == 404


def test_a_user_uploads_browses_downloads_searches_runs_a_job_and_reads_the_dashboard(page, gateway, make_caller):
    alice = make_caller("team-web", "member")

    # key entry: a wrong key is refused clearly, the right one shows the team and role
    enter_key(page, "ak_wrong")
    expect(page.get_by_role("alert")).to_contain_text("refused")
    page.get_by_label("API key").fill(alice.key)
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#who")).to_have_text("Team team-web · member")

    # upload: three files dropped at once, one request each, each created
    page.get_by_role("link", name="Upload", exact=True).click()
    drop_files(page, "#drop-zone", [CAT, COFFEE, ROCKET])
    rows = page.locator("#upload-list li")
    expect(rows).to_have_count(3)
    for row in rows.all():
        expect(row).to_have_attribute("data-status", "created", timeout=30_000)
    expect(page.locator("#upload-list progress[value='100']")).to_have_count(3)
    shot(page, "upload")
    ids = [href.split("/")[-1] for href in rows.locator("a").evaluate_all("(as) => as.map((a) => a.hash)")]
    wait_processed(gateway, alice, ids)

    # gallery: the three thumbnails, all loaded
    page.get_by_role("link", name="Gallery", exact=True).click()
    cards = page.locator("#gallery li")
    expect(cards).to_have_count(3)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#gallery img')].every((i) => i.complete && i.naturalWidth > 0)"
    )
    shot(page, "gallery")

    # the image page: metadata, labels, statistics; download as PNG
    page.locator("#gallery li", has_text="chelsea.png").locator("a.thumb-link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("chelsea.png")
    expect(page.locator(".labels li").first).to_be_visible()
    expect(page.locator("#stats-table td[data-func=mean][data-channel=r]")).to_have_text(re.compile(r"^\d+\.\d{3}$"))
    page.get_by_label("Operations").fill("")
    page.get_by_label("Format").select_option("png")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download").click()
    download = info.value
    assert download.suggested_filename == "chelsea.png"
    data = open(download.path(), "rb").read()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert Image.open(io.BytesIO(data)).size == CAT_SIZE
    # a bad transform shows the API's reason
    page.get_by_label("Operations").fill("rotate:banana")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#transform-message [role=alert]")).to_contain_text("400")
    shot(page, "image")

    # search by a prompt: the cat first, with its score
    page.get_by_role("link", name="Search", exact=True).click()
    page.get_by_label("Describe the image").fill("a cat sitting")
    page.get_by_label("Describe the image").press("Enter")
    first = page.locator("#search-results li").first
    expect(first).to_contain_text("chelsea.png")
    expect(first.locator(".score")).to_have_text(re.compile(r"^-?\d\.\d{3}$"))
    shot(page, "search")

    # a job over a selection of two images, followed to the end
    page.get_by_role("link", name="Gallery", exact=True).click()
    page.get_by_label("Select coffee.jpg").check()
    page.get_by_label("Select rocket.jpg").check()
    expect(page.locator("#selection-count")).to_contain_text("2 selected")
    page.get_by_role("link", name="Create a job with the selection", exact=True).click()
    page.get_by_label("Operations, one per line").fill("resize=50\nblur=5")
    page.get_by_label("Output format").select_option("png")
    page.get_by_role("button", name="Submit the job").click()
    expect(page.locator("#job-status")).to_have_attribute("data-status", "done", timeout=30_000)
    expect(page.locator("#job-progress")).to_have_js_property("value", 2)
    expect(page.locator("#job-items .output-link")).to_have_count(2)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#job-items img')].every((i) => i.complete && i.naturalWidth > 0)"
    )
    shot(page, "job")

    # the dashboard: today's three uploads, two JPEG and one PNG
    page.get_by_role("link", name="Dashboard", exact=True).click()
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    expect(page.locator(f"#uploads-chart rect[data-label='{today}']")).to_have_attribute("data-value", "3")
    expect(page.locator("#formats-chart rect[data-label=JPEG]")).to_have_attribute("data-value", "2")
    expect(page.locator("#formats-chart rect[data-label=PNG]")).to_have_attribute("data-value", "1")
    expect(page.locator("#formats-table tbody tr")).to_have_count(2)
    expect(page.locator("#totals")).to_contain_text("3 images in total")
    shot(page, "dashboard")


def test_keyboard_only_key_entry_upload_and_search(page, gateway, make_caller):
    bob = make_caller("team-keys", "member")
    page.goto("/app")

    tab_to(page, lambda e: e["id"] == "api-key")
    page.keyboard.type(bob.key)
    page.keyboard.press("Enter")
    expect(page.locator("#who")).to_have_text("Team team-keys · member")

    tab_to(page, lambda e: e["href"] == "#/upload")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Upload")
    expect(page.get_by_role("heading", level=1)).to_be_focused()
    tab_to(page, lambda e: e["id"] == "file-input")
    page.locator(":focus").set_input_files([{"name": n, "mimeType": t, "buffer": b} for n, t, b in (CAT, COFFEE)])
    rows = page.locator("#upload-list li")
    expect(rows).to_have_count(2)
    for row in rows.all():
        expect(row).to_have_attribute("data-status", "created", timeout=30_000)
    ids = [href.split("/")[-1] for href in rows.locator("a").evaluate_all("(as) => as.map((a) => a.hash)")]
    wait_processed(gateway, bob, ids)

    tab_to(page, lambda e: e["href"] == "#/search", key="Shift+Tab")
    page.keyboard.press("Enter")
    tab_to(page, lambda e: e["id"] == "search-q")
    page.keyboard.type("cup of coffee")
    page.keyboard.press("Enter")
    expect(page.locator("#search-results li").first).to_contain_text("coffee.jpg")
    # the result opens with Enter, and a checkbox toggles with Space
    tab_to(page, lambda e: e["tag"] == "a" and (e["href"] or "").startswith("#/image/"))
    page.keyboard.press("Enter")
    tab_to(page, lambda e: e["id"] == "select-this")
    page.keyboard.press("Space")
    expect(page.locator("#select-this")).to_be_checked()
    shot(page, "keyboard")


def test_the_page_fits_a_phone(browser, stack, make_caller):
    carol = make_caller("team-phone", "member")
    context = browser.new_context(base_url=stack.gateway_url, viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        enter_key(page, carol.key)
        expect(page.locator("#who")).to_contain_text("team-phone")
        for route in ("#/upload", "#/search", "#/jobs", "#/dashboard"):
            page.goto(f"/app{route}")
            page.wait_for_selector("h1")
            width = page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= 390, (route, width)
        shot(page, "phone-dashboard")
    finally:
        context.close()


# WCAG 2.0/2.1 levels A and AA, and axe's best practices (axe-core, bundled by axe-playwright-python).
AXE_RULES = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}}


def axe_violations(page) -> list[str]:
    found = Axe().run(page, options=AXE_RULES).response["violations"]
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}" for v in found]


def test_every_view_of_the_page_passes_axes_accessibility_rules(page, gateway, make_caller):
    erin = make_caller("team-axe", "member")
    response = gateway.post("/v1/images", headers=erin.headers, files=[("files", (CAT[0], CAT[2], CAT[1]))])
    assert response.status_code == 201, response.text
    image_id = response.json()["files"][0]["id"]
    job = gateway.post(
        "/v1/jobs",
        headers=erin.headers,
        json={"images": [{"input": image_id, "output": "small"}], "operations": ["resize=50"]},
    )
    assert job.status_code == 202, job.text
    wait_processed(gateway, erin, [image_id])
    page.goto("/app#/gallery")
    page.wait_for_selector("h1")
    found = {"#/key (no key yet)": axe_violations(page)}

    page.get_by_label("API key").fill(erin.key)
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#who")).to_contain_text("team-axe")
    views = {
        "#/gallery": "img",
        f"#/image/{image_id}": "img",
        "#/upload": "input[type=file]",
        "#/search?q=cat": "h1",
        "#/jobs": "h1",
        f"#/job/{job.json()['job_id']}": "h1",
        "#/dashboard": "h1",
        "#/key": "h1",
    }
    for route, ready in views.items():
        page.goto(f"/app{route}")
        page.wait_for_selector(ready)
        page.wait_for_load_state("networkidle")
        found[route] = axe_violations(page)

    assert {route: problems for route, problems in found.items() if problems} == {}


def test_swagger_ui_lists_the_operations_and_authorize_keeps_the_key(page, make_caller):
    dave = make_caller("team-docs", "member")
    page.goto("/docs")
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.locator(".opblock").count() >= 30
    expect(page.locator("#operations-default-getMe")).to_be_visible()

    page.get_by_role("button", name=re.compile("Authorize")).first.click()
    dialog = page.locator(".dialog-ux")
    dialog.locator("input").fill(dave.key)
    dialog.get_by_role("button", name="Apply credentials").click()
    expect(dialog.get_by_role("button", name="Remove authorization")).to_be_visible()
    dialog.locator("button.btn-done").click()

    # "Try it out" on GET /v1/me sends the key to this same origin
    operation = page.locator("#operations-default-getMe")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    expect(operation.locator(".live-responses-table tbody .response-col_status").first).to_have_text("200")
    expect(operation.locator(".live-responses-table")).to_contain_text("team-docs")
    shot(page, "swagger")

    # persistAuthorization: the key survives a reload
    page.reload()
    expect(page.locator(".opblock").first).to_be_visible()
    assert dave.key in (page.evaluate("() => localStorage.getItem('authorized')") or "")
