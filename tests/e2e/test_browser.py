"""Headless Chromium against a real `streamlit run app.py`: login form, Overview chart, cookie replay, roles.

The server runs on a fresh SQLite file with the deterministic demo data, outside demo mode (a real cookie key).
Readiness is Streamlit's own script state, never network idle: the app keeps a websocket open.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
from sqlalchemy import select

import i18n
from tests.e2e.server import CHROMIUM_ARGS, ROOT, StreamlitServer, chromium_path

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]

REQUIRE_BROWSER = os.environ.get("CARELOOP_REQUIRE_BROWSER") == "1"
READY = '[data-testid="stApp"][data-test-script-state="notRunning"]'
VIEWPORT = {"width": 1400, "height": 900}
TIMEOUT_MS = 45_000  # generous: CI machines are small and the first run imports the whole app
COOKIE_NAME = "careloop_session"
DOCS = ROOT / "docs"
# One account per role, plus one that only ever gets wrong passwords (so no test locks out another's user).
PASSWORDS = {
    "manager": "Manager-pass-2026",
    "nurse": "Nurse-pass-2026",
    "admin": "Admin-pass-2026",
    "quality": "Quality-pass-2026",
}
DISPLAY_NAMES = {"manager": "王敏", "nurse": "李静", "admin": "张伟", "quality": "陈芳"}
WRONG_PASSWORD_USER = "wrongpw"


def _unavailable(reason: str) -> NoReturn:
    if REQUIRE_BROWSER:
        pytest.fail(f"browser tests are required (CARELOOP_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(f"browser tests skipped: {reason}")


def t(key: str, lang: str = i18n.DEFAULT_LANGUAGE, **params: Any) -> str:
    return i18n.t(key, lang, **params)


def _prepare_database(url: str) -> None:
    """Migrate, load reference and demo data, and add one user per role with a known password."""
    from db.catalogue import ensure_reference_data
    from db.engine import make_engine, transaction
    from db.migrate import upgrade
    from db.models import Department
    from db.seed import seed_demo
    from services import auth, clock

    engine = make_engine(url)
    try:
        upgrade(engine)
        with transaction(engine) as s:
            ensure_reference_data(s)
        seed_demo(engine, patients=300, seed=7, today=clock.today())
        with transaction(engine) as s:
            dept = s.scalars(select(Department.code).order_by(Department.id)).first()
            for role, password in PASSWORDS.items():
                auth.create_user(s, username=f"e2e_{role}", password=password, role=role, now=clock.now(),
                                 department_code=dept, display_name=DISPLAY_NAMES[role])
            auth.create_user(s, username=WRONG_PASSWORD_USER, password="Right-pass-2026", role="quality",
                             now=clock.now(), department_code=dept)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    if executable is None:
        _unavailable("no Chromium at /usr/bin/chromium or on PATH (install the Debian package `chromium`)")
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"the playwright package cannot be imported ({exc}); pip install -r requirements-dev.txt")
    with sync_playwright() as pw:
        try:
            chromium = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        except PlaywrightError as exc:
            _unavailable(f"Chromium at {executable} does not start: {exc}")
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamlitServer]:
    tmp = tmp_path_factory.mktemp("e2e")
    url = f"sqlite:///{tmp / 'careloop.db'}"
    _prepare_database(url)
    srv = StreamlitServer(database_url=url, cookie_key=secrets.token_urlsafe(36), log_path=tmp / "streamlit.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=VIEWPORT, locale="zh-CN", timezone_id="Asia/Shanghai")
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


# --- helpers ------------------------------------------------------------------------------------------------


def _settled(page: Page) -> None:
    """Wait until Streamlit has finished the current script run."""
    page.wait_for_selector(READY, timeout=TIMEOUT_MS)


def _wait_heading(page: Page, key: str, lang: str) -> None:
    """Wait for a page title. During a rerun Streamlit briefly keeps the stale element beside the new one, so two
    identical headings can exist for a moment: wait for the run to end, then take the first."""
    _settled(page)
    page.get_by_role("heading", name=t(key, lang), exact=True).first.wait_for()
    _settled(page)


def _no_exception(page: Page, server: StreamlitServer) -> None:
    shown = page.locator('[data-testid="stException"]')
    assert shown.count() == 0, f"the app shows an exception: {shown.first.inner_text()}\n{server.log()}"


def _open(page: Page, server: StreamlitServer, path: str = "") -> None:
    page.goto(f"{server.url}/{path}")
    _settled(page)


def _switch_language(page: Page, lang: str) -> None:
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').click()
    page.get_by_role("option", name=i18n.language_label(lang)).click()
    page.get_by_label(t("login.username", lang)).or_(page.get_by_role("heading", name=t("overview.title", lang))) \
        .first.wait_for()
    _settled(page)


def _submit_login(page: Page, username: str, password: str, lang: str) -> None:
    page.get_by_label(t("login.username", lang)).fill(username)
    page.get_by_label(t("login.password", lang), exact=True).fill(password)
    page.get_by_role("button", name=t("login.submit", lang), exact=True).click()


def _login(page: Page, server: StreamlitServer, role: str, lang: str = i18n.DEFAULT_LANGUAGE) -> None:
    _open(page, server)
    if lang != i18n.DEFAULT_LANGUAGE:
        _switch_language(page, lang)
    _submit_login(page, f"e2e_{role}", PASSWORDS[role], lang)
    # Signed in once the sidebar offers to sign out.
    _logout_button(page, lang).wait_for()
    _settled(page)


def _logout_button(page: Page, lang: str) -> Any:
    return page.locator('[data-testid="stSidebar"]').get_by_role("button", name=t("login.logout", lang), exact=True)


def _login_form(page: Page, lang: str) -> Any:
    return page.get_by_role("button", name=t("login.submit", lang), exact=True)


def _wait_for_cookie(context: BrowserContext, page: Page) -> list[Any]:
    """The app writes the re-login cookie one script run after login (through a component in the browser)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        cookies = context.cookies()
        if any(c["name"] == COOKIE_NAME and c["value"] for c in cookies):
            return list(cookies)
        page.wait_for_timeout(200)
    raise AssertionError(f"the {COOKIE_NAME} cookie never appeared; cookies: {context.cookies()}")


def _wait_for_cookie_gone(context: BrowserContext, page: Page) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not any(c["name"] == COOKIE_NAME and c["value"] for c in context.cookies()):
            return
        page.wait_for_timeout(200)
    raise AssertionError(f"sign-out did not delete the {COOKIE_NAME} cookie")


def _metric_values(page: Page) -> dict[str, str]:
    metrics = page.locator('[data-testid="stMetric"]')
    out = {}
    for i in range(metrics.count()):
        label = metrics.nth(i).locator('[data-testid="stMetricLabel"]').inner_text().strip()
        out[label] = metrics.nth(i).locator('[data-testid="stMetricValue"]').inner_text().strip()
    return out


def _number(text: str) -> float:
    match = re.search(r"-?[\d,]+(?:\.\d+)?", text)
    assert match, f"no number in {text!r}"
    return float(match.group().replace(",", ""))


def _expect_overview(page: Page, server: StreamlitServer, lang: str) -> None:
    """The Overview with its five KPI cards filled from the demo data and the NPS chart drawn."""
    _wait_heading(page, "overview.title", lang)
    chart = page.locator('[data-testid="stVegaLiteChart"]').first
    chart.wait_for()
    # vega-embed has drawn the line and its points (SVG or canvas, depending on the renderer).
    page.wait_for_function(
        """() => {
            const c = document.querySelector('[data-testid="stVegaLiteChart"]');
            if (!c) return false;
            if (c.querySelectorAll('g.mark-line path, g.mark-symbol path').length >= 2) return true;
            const canvas = c.querySelector('canvas');
            return !!canvas && canvas.width > 100 && canvas.height > 100;
        }""",
        timeout=TIMEOUT_MS,
    )
    _settled(page)
    _no_exception(page, server)
    values = _metric_values(page)
    assert len(values) == 5, values
    assert _number(values[t("overview.active_patients", lang)]) > 0, values
    assert _number(values[t("overview.responses", lang)]) > 0, values
    assert -100 <= _number(values[t("overview.nps", lang)]) <= 100, values
    title = t("overview.nps_chart_title", lang, scope="").rstrip(" —")
    assert title in (chart.text_content() or ""), "the chart has no title saying what it shows"


def _screenshot(page: Page, name: str, folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    # No hover toolbar over the chart and no focus ring on the language box in the picture.
    page.mouse.move(5, VIEWPORT["height"] - 5)
    page.evaluate("document.activeElement instanceof HTMLElement && document.activeElement.blur()")
    page.evaluate("document.fonts.ready")
    page.wait_for_timeout(300)  # the chart's enter transition
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000, "the screenshot is suspiciously small"
    return path


# --- tests --------------------------------------------------------------------------------------------------


def test_manager_signs_in_and_sees_overview_in_both_languages(
    server: StreamlitServer, context: BrowserContext, tmp_path: Path
) -> None:
    # The README's pictures are rewritten only when asked for (CARELOOP_UPDATE_SCREENSHOTS=1), not by every run.
    folder = DOCS if os.environ.get("CARELOOP_UPDATE_SCREENSHOTS") == "1" else tmp_path
    page = context.new_page()
    _login(page, server, "manager", lang="zh_CN")
    _expect_overview(page, server, "zh_CN")
    _screenshot(page, "screenshot-overview-zh.png", folder)

    _switch_language(page, "en")  # signed in: the same session, now in English
    _expect_overview(page, server, "en")
    shot = _screenshot(page, "screenshot-overview.png", folder)
    assert shot.stat().st_size > 10_000  # a real picture of the page, used in the README


def test_cookie_relogs_in_until_sign_out_revokes_it(
    server: StreamlitServer, browser: Browser, context: BrowserContext
) -> None:
    lang = i18n.DEFAULT_LANGUAGE  # a reload starts a new Streamlit session in the default language
    page = context.new_page()
    _login(page, server, "manager", lang)
    cookies = _wait_for_cookie(context, page)

    # A reload is a new Streamlit session: only the cookie can sign it in.
    page.reload()
    _settled(page)
    _expect_overview(page, server, lang)
    assert _login_form(page, lang).count() == 0

    _logout_button(page, lang).click()
    _login_form(page, lang).wait_for()
    _wait_for_cookie_gone(context, page)
    _settled(page)

    # The cookie copied before sign-out names a session the server has revoked.
    replay = browser.new_context(viewport=VIEWPORT, locale="zh-CN")
    replay.set_default_timeout(TIMEOUT_MS)
    try:
        replay.add_cookies(cookies)
        other = replay.new_page()
        _open(other, server)
        _login_form(other, lang).wait_for()
        _no_exception(other, server)
        assert other.get_by_role("heading", name=t("overview.title", lang), exact=True).count() == 0
        assert _logout_button(other, lang).count() == 0
    finally:
        replay.close()


def test_nurse_lands_on_worklist_and_cannot_open_users_by_url(
    server: StreamlitServer, browser: Browser, context: BrowserContext
) -> None:
    lang = i18n.DEFAULT_LANGUAGE
    page = context.new_page()
    _login(page, server, "nurse", lang)
    _wait_heading(page, "worklist.title", lang)
    _no_exception(page, server)
    _wait_for_cookie(context, page)  # so the new session opened by the URL is the nurse's, not anonymous

    _open(page, server, "users")
    _logout_button(page, lang).wait_for()  # still signed in as the nurse, on her own landing page...
    _wait_heading(page, "worklist.title", lang)
    _settled(page)
    assert page.get_by_role("heading", name=t("users.title", lang), exact=True).count() == 0  # ...without Users
    assert page.get_by_text(t("users.create", lang)).count() == 0

    # Control: the same URL does open the Users page for an administrator.
    admin_ctx = browser.new_context(viewport=VIEWPORT, locale="zh-CN")
    admin_ctx.set_default_timeout(TIMEOUT_MS)
    try:
        admin = admin_ctx.new_page()
        _login(admin, server, "admin", lang)
        _wait_for_cookie(admin_ctx, admin)
        _open(admin, server, "users")
        _wait_heading(admin, "users.title", lang)
        _no_exception(admin, server)
    finally:
        admin_ctx.close()


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
def test_wrong_password_shows_translated_error(server: StreamlitServer, context: BrowserContext, lang: str) -> None:
    page = context.new_page()
    _open(page, server)
    if lang != i18n.DEFAULT_LANGUAGE:
        _switch_language(page, lang)
    _submit_login(page, WRONG_PASSWORD_USER, "Not-the-password-1", lang)
    page.get_by_text(t("auth.invalid_credentials", lang), exact=True).wait_for()
    _settled(page)
    _no_exception(page, server)
    assert _logout_button(page, lang).count() == 0
    assert _login_form(page, lang).count() == 1
