"""The review console as people use it: real Chromium (Playwright) against the real app served by
uvicorn over a seeded SQLite database (tests/console_server.py).

Every page a test visits is saved as a screenshot under test-artifacts/console/ (git-ignored), so
a failure can be looked at, and a change to the pages can be reviewed by eye.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.console_server import KOREAN_KEYWORD, PASSWORDS, USERS, VIDEO_SEGMENTS, running_console

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "console"
PACKET_TIMEOUT_MS = 120_000  # building a packet prints its PDF with Chromium: slow on 2 cores

if not os.path.exists(CHROMIUM):
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must have Chromium at {CHROMIUM} (Debian package 'chromium')")
    pytest.skip(f"no Chromium at {CHROMIUM}; install Debian's 'chromium' package", allow_module_level=True)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def console(tmp_path_factory):
    """(server, seeded data): one console over one database for the module's tests. Each test works
    on its own evidence records, so the order they run in does not matter."""
    with running_console(tmp_path_factory.mktemp("console")) as (server, seeded):
        yield server, seeded


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


class Watched:
    """A page plus what it must never do: open a dialog (an injected script ran) or throw."""

    def __init__(self, page, name: str):
        self.page = page
        self.name = name
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def shot(self, label: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{self.name}-{label}")
        self.page.screenshot(path=str(ARTIFACTS / f"{safe}.png"), full_page=True)


@pytest.fixture
def new_page(browser, request):
    """Factory: a fresh browser context (own cookies) and page per call, checked at teardown."""
    contexts, watched = [], []

    def make(label: str = "page") -> Watched:
        context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(20_000)
        contexts.append(context)
        w = Watched(context.new_page(), f"{request.node.name}-{label}")
        watched.append(w)
        return w

    yield make
    for context in contexts:
        context.close()
    for w in watched:
        assert w.dialogs == [], f"a dialog opened: injected script ran: {w.dialogs}"
        assert w.errors == [], f"the console's own scripts threw: {w.errors}"


# -- helpers --------------------------------------------------------------------------------------
SUBMIT = "button:not([type=button]):not([type=reset]), input[type=submit]"


def fill_login(w: Watched, base: str, username: str, password: str, next_path: str) -> None:
    """Open the login form, type like a person (the page has loaded everything it asks for), send it."""
    page = w.page
    page.goto(f"{base}/login?next={next_path}")
    page.wait_for_load_state("networkidle")
    form = page.locator("form#login")
    form.locator("input[name=username]").fill(username)
    form.locator("input[name=password]").fill(password)
    with page.expect_navigation():
        form.locator(SUBMIT).first.click()


def login(w: Watched, base: str, role: str, next_path: str = "/") -> None:
    fill_login(w, base, USERS[role], PASSWORDS[role], next_path)
    page = w.page
    if urlsplit(page.url).path != next_path:
        w.shot(f"login-failed-{role}")
        pytest.fail(f"login as {role} landed on {page.url}, showing: {page.locator('body').inner_text()!r}")


def logout(w: Watched) -> None:
    with w.page.expect_navigation():
        w.page.locator("form#logout").locator(SUBMIT).first.click()
    assert urlsplit(w.page.url).path == "/login"


def set_field(form, name: str, value: str) -> None:
    """Fill a filter whether the page made it a text input or a select."""
    field = form.locator(f"[name={name}]")
    if field.evaluate("el => el.tagName") == "SELECT":
        field.select_option(value)
    else:
        field.fill(value)


def gallery_ids(page) -> set[int]:
    hrefs = page.locator("[data-testid=gallery-item] a.evidence-link").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))")
    ids = set()
    for href in hrefs:
        match = re.fullmatch(r"/evidence/(\d+)", urlsplit(href).path)
        assert match, f"evidence link {href!r} is not /evidence/ID"
        ids.add(int(match.group(1)))
    return ids


def loaded_images(page, selector: str) -> list[str]:
    """src of every matching <img>, failing if one did not load (a broken /blob link)."""
    images = page.locator(selector)
    assert images.count() > 0, f"no {selector} on {page.url}"
    sources = []
    for img in images.all():
        img.scroll_into_view_if_needed()
        page.wait_for_function("el => el.complete", arg=img.element_handle())
        assert img.evaluate("el => el.naturalWidth") > 0, f"{selector} {img.get_attribute('src')} did not load"
        sources.append(img.get_attribute("src"))
    return sources


def submit(page, form_selector: str, *, timeout: float = 20_000) -> None:
    with page.expect_navigation(timeout=timeout):
        page.locator(form_selector).locator(SUBMIT).first.click()


# -- a person's path ------------------------------------------------------------------------------
def test_investigator_works_a_case_from_dashboard_to_takedown(console, new_page):
    server, data = console
    base = server.base_url
    w = new_page("investigator")
    page = w.page

    # Not logged in: the dashboard sends the browser to the login form, remembering where it was.
    page.goto(f"{base}/")
    assert urlsplit(page.url).path == "/login"
    assert parse_qs(urlsplit(page.url).query).get("next") == ["/"]
    assert page.locator("form#login input[name=csrf_token][type=hidden]").count() == 1
    w.shot("01-login")
    login(w, base, "investigator")

    # Dashboard: stage counts and both charts, drawn as SVG with marks in them.
    assert page.locator("select#campaign").count() == 1
    assert "42" in page.locator("[data-testid=stage-counts]").inner_text()  # media_fetched of the last run
    for chart in ("chart-flagged-over-time", "chart-per-platform"):
        svg = page.locator(f"svg[data-testid={chart}]")
        assert svg.count() == 1, f"the dashboard has no {chart}"
        marks = svg.locator("rect, path, circle, line, polyline").count()
        assert marks > 0, f"{chart} is an empty SVG"
    per_platform = page.locator("svg[data-testid=chart-per-platform]").text_content()
    assert "demo" in per_platform and "mastodon" in per_platform
    w.shot("02-dashboard")

    # Gallery: the Korean keyword finds the three posts that carry it; adding a verdict narrows it.
    page.goto(f"{base}/gallery")
    for src in loaded_images(page, "[data-testid=gallery-item] img.thumb"):
        assert re.fullmatch(r"/blob/[0-9a-f]{64}", src), f"thumbnail {src!r} is not /blob/SHA256"
    assert gallery_ids(page) == set(data.ids.values())
    w.shot("03-gallery")
    filters = page.locator("form#filters")
    set_field(filters, "q", KOREAN_KEYWORD)
    submit(page, "form#filters")
    assert parse_qs(urlsplit(page.url).query).get("q") == [KOREAN_KEYWORD]
    assert gallery_ids(page) == {data.korean_fake, data.korean_review, data.video}
    w.shot("04-gallery-keyword")
    filters = page.locator("form#filters")
    set_field(filters, "verdict", "likely_fake")
    submit(page, "form#filters")
    assert gallery_ids(page) == {data.korean_fake, data.video}
    for card in page.locator("[data-testid=gallery-item]").all():
        assert "likely_fake" in card.locator(".verdict").inner_text().replace(" ", "_").lower()
        assert card.locator(".score").inner_text().strip()
    w.shot("05-gallery-keyword-verdict")

    # Evidence page of the video: it plays, and a suspect segment's button seeks to its start.
    with page.expect_navigation():
        page.locator(f"[data-testid=gallery-item] a.evidence-link[href$='/evidence/{data.video}']").first.click()
    assert urlsplit(page.url).path == f"/evidence/{data.video}"
    video = page.locator("[data-testid=media] video#evidence-video")
    assert video.count() == 1 and video.get_attribute("controls") is not None
    buttons = page.locator("[data-testid=segments] button.segment")
    assert buttons.count() == len(VIDEO_SEGMENTS)
    starts = [float(b.get_attribute("data-start")) for b in buttons.all()]
    ends = [float(b.get_attribute("data-end")) for b in buttons.all()]
    assert starts == [s for s, _ in VIDEO_SEGMENTS] and ends == [e for _, e in VIDEO_SEGMENTS]
    for hook in ("table[data-testid=sightings]", "[data-testid=provenance]", "table[data-testid=custody]"):
        assert page.locator(hook).count() == 1, f"the evidence page has no {hook}"
    loaded_images(page, "img[data-testid=screenshot]")
    detections = page.locator("table[data-testid=detections]").inner_text()
    assert "demo-detector" in detections and "0.5" in detections  # model and threshold
    page.wait_for_function("() => document.querySelector('#evidence-video').readyState >= 1", timeout=20_000)
    # Muted: a headless browser with no user gesture may only autoplay muted media.
    page.evaluate("async () => { const v = document.querySelector('#evidence-video'); "
                  "v.muted = true; await v.play(); }")
    page.wait_for_function("() => document.querySelector('#evidence-video').currentTime > 0.3", timeout=20_000)
    page.evaluate("() => document.querySelector('#evidence-video').pause()")
    for index, start in enumerate(starts):
        # Where the seek landed, read in the 'seeked' event itself: the page may resume playing after it.
        page.evaluate("""() => {
            const v = document.querySelector('#evidence-video');
            window.__seekedAt = null;
            v.addEventListener('seeked', () => { window.__seekedAt = v.currentTime; }, {once: true});
        }""")
        buttons.nth(index).click()
        page.wait_for_function("() => window.__seekedAt !== null", timeout=20_000)
        landed = page.evaluate("() => window.__seekedAt")
        assert abs(landed - start) < 0.05, f"segment button {index} seeked to {landed}, not {start}"
    w.shot("06-evidence-video")

    # Review: confirm the hostile-text post with a rationale; the status and custody log change.
    page.goto(f"{base}/evidence/{data.xss}")
    status = page.locator("[data-testid=review-status]")
    assert "unreviewed" in status.inner_text().lower()
    form = page.locator("form#review")
    form.locator("input[name=decision][value=confirmed]").check()
    form.locator("textarea[name=rationale]").fill("Face swap visible at the jaw line; same clip as case 12.")
    submit(page, "form#review")
    assert urlsplit(page.url).path == f"/evidence/{data.xss}"
    assert "confirmed" in page.locator("[data-testid=review-status]").inner_text().lower()
    assert "reviewed" in page.locator("table[data-testid=custody]").inner_text().lower()
    w.shot("07-evidence-reviewed")

    # Takedown: tick two demo-platform items in the gallery and build one packet for them.
    page.goto(f"{base}/gallery?platform=demo")
    chosen = (data.korean_fake, data.xss)
    selection = page.locator("form#takedown-select")
    for evidence_id in chosen:
        selection.locator(f"input[name=evidence_ids][value='{evidence_id}']").check()
    selection.locator("select[name=platform]").select_option("demo")
    # The Korean item was never reviewed: the packet may include it only when asked, marked.
    selection.locator("input[name=allow_unreviewed]").check()
    w.shot("08-gallery-selected")
    with page.expect_navigation(timeout=PACKET_TIMEOUT_MS):
        selection.get_by_role("button", name=re.compile("Build takedown packet", re.I)).click()
    match = re.fullmatch(r"/takedowns/(\d+)", urlsplit(page.url).path)
    assert match, f"building a packet landed on {page.url}"
    takedown_url = page.url
    assert "drafted" in page.locator("[data-testid=takedown-status]").inner_text().lower()
    w.shot("09-takedown-drafted")

    # Download: a zip holding the notice PDF and a manifest every file in it matches.
    with page.expect_download(timeout=60_000) as info:
        page.locator("a[data-testid=download]").click()
    download = info.value
    assert download.failure() is None
    packet = zipfile.ZipFile(io.BytesIO(Path(download.path()).read_bytes()))
    names = packet.namelist()
    pdf = [n for n in names if n.rsplit("/", 1)[-1] == "notice.pdf"]
    manifest = [n for n in names if n.rsplit("/", 1)[-1] == "MANIFEST.sha256"]
    assert pdf and manifest, f"packet zip lacks notice.pdf or MANIFEST.sha256: {names}"
    assert packet.read(pdf[0]).startswith(b"%PDF-")
    prefix = manifest[0][: -len("MANIFEST.sha256")]
    listed = [line.split(None, 1) for line in packet.read(manifest[0]).decode().splitlines() if line.strip()]
    assert any(path.strip().endswith("notice.pdf") for _, path in listed)
    for digest, path in listed:
        member = prefix + path.strip().lstrip("*")
        assert hashlib.sha256(packet.read(member)).hexdigest() == digest, f"{member} does not match the manifest"
    for evidence_id in chosen:
        assert any(n.startswith(f"{prefix}evidence/{evidence_id}/") for n in names)

    # Tracking: mark it sent; the page and the list of takedowns say so.
    form = page.locator("form#status")
    form.locator("select[name=status]").select_option("sent")
    form.locator("input[name=note]").fill("sent through the demo report form")
    submit(page, "form#status")
    assert page.url == takedown_url
    assert "sent" in page.locator("[data-testid=takedown-status]").inner_text().lower()
    w.shot("10-takedown-sent")
    page.goto(f"{base}/takedowns")
    assert "sent" in page.locator("table[data-testid=takedowns]").inner_text().lower()
    w.shot("11-takedowns")

    # Log out: the same evidence page now sends the browser to the login form.
    logout(w)
    page.goto(f"{base}/evidence/{data.xss}")
    assert urlsplit(page.url).path == "/login"
    assert parse_qs(urlsplit(page.url).query).get("next") == [f"/evidence/{data.xss}"]
    w.shot("12-after-logout")


# -- login, hostile text, roles, audit --------------------------------------------------------------
def test_a_wrong_password_is_refused_with_a_clear_message(console, new_page):
    server, _ = console
    w = new_page("stranger")
    fill_login(w, server.base_url, USERS["investigator"], "not-the-password-at-all", "/gallery")
    assert urlsplit(w.page.url).path == "/login"
    assert "Wrong username or password" in w.page.locator("body").inner_text()
    assert not any(c["name"] == "dw_session" for c in w.page.context.cookies())
    w.shot("login-wrong-password")
    w.page.goto(f"{server.base_url}/gallery")
    assert urlsplit(w.page.url).path == "/login"  # still not logged in


def test_script_in_a_post_is_shown_as_text_and_never_runs(console, new_page):
    server, data = console
    w = new_page("investigator")
    page = w.page
    login(w, server.base_url, "investigator", f"/evidence/{data.xss}")
    response = page.reload()
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy, f"CSP allows inline scripts: {policy!r}"
    body = page.locator("body").inner_text()
    assert "<script>alert('xss')</script>" in body
    assert "<img src=x onerror=alert(2)>" in body
    assert page.locator("img[src=x]").count() == 0  # the injected tag did not become an element
    assert page.locator("script:not([src])").count() == 0  # CSP forbids inline scripts; none rendered
    w.shot("evidence-xss")
    page.goto(f"{server.base_url}/gallery?platform=demo")
    assert data.xss in gallery_ids(page)
    assert "<script>alert('xss')</script>" in page.locator("body").inner_text()
    assert page.locator("img[src=x]").count() == 0
    w.shot("gallery-xss")
    page.wait_for_load_state("networkidle")  # give any injected handler its chance to fire
    assert w.dialogs == [], f"the post's script ran: {w.dialogs}"


def test_viewer_reads_evidence_but_cannot_review(console, new_page):
    server, data = console
    w = new_page("viewer")
    page = w.page
    login(w, server.base_url, "viewer", f"/evidence/{data.korean_review}")
    assert page.locator("[data-testid=review-status]").count() == 1
    assert page.locator("table[data-testid=detections]").count() == 1
    assert page.locator("form#review").count() == 0
    w.shot("evidence-as-viewer")
    # Posting the form anyway (with the viewer's own valid CSRF token) is refused.
    csrf = page.locator("form#logout input[name=csrf_token]").get_attribute("value")
    answer = page.request.post(f"{server.base_url}/evidence/{data.korean_review}/review", form={
        "decision": "confirmed", "rationale": "viewer should not be able to do this", "csrf_token": csrf,
    }, max_redirects=0)
    assert answer.status == 403
    page.reload()
    assert "unreviewed" in page.locator("[data-testid=review-status]").inner_text().lower()
    response = page.goto(f"{server.base_url}/admin/audit")
    assert response.status == 403
    w.shot("audit-as-viewer")


def test_admin_sees_the_investigators_actions_in_the_audit_log(console, new_page):
    server, data = console
    investigator = new_page("investigator")
    page = investigator.page
    login(investigator, server.base_url, "investigator", f"/evidence/{data.english}")
    form = page.locator("form#review")
    form.locator("input[name=decision][value=dismissed]").check()
    form.locator("textarea[name=rationale]").fill("Original photo from the campaign's press kit; not edited.")
    submit(page, "form#review")
    assert "dismissed" in page.locator("[data-testid=review-status]").inner_text().lower()
    response = page.goto(f"{server.base_url}/admin/audit")
    assert response.status == 403  # investigators do not read the audit log
    investigator.shot("audit-as-investigator")
    page.goto(f"{server.base_url}/evidence/{data.english}")
    logout(investigator)

    admin = new_page("admin")
    login(admin, server.base_url, "admin", "/admin/audit")
    table = admin.page.locator("table[data-testid=audit]")
    rows = [r.inner_text() for r in table.locator("tbody tr").all()]
    mine = [r for r in rows if USERS["investigator"] in r]
    for action in ("login", "view", "review", "logout"):
        assert any(re.search(rf"\b{action}\b", r) for r in mine), f"no {action!r} row for the investigator: {mine}"
    assert any("review" in r and f"evidence:{data.english}" in r for r in mine)
    admin.shot("audit-as-admin")
