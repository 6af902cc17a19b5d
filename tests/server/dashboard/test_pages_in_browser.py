"""The dashboard in a real browser: Playwright drives Debian's chromium (never a browser
Playwright downloads) against a dashboard served by uvicorn on a store holding a recorded
run and a running one. Screenshots go to tests/artifacts/dashboard/ (git-ignored)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import dashboard_store
import pytest

from fedrad.server.dashboard.app import create_app

store = dashboard_store.store  # the module's recorded store (a fixture)

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard"

pytestmark = pytest.mark.slow  # a browser and uvicorn: about 40 s on a shared machine

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not CHROMIUM.exists():
    pytest.skip(
        f"no browser: {CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard(store):
    """The dashboard's URL, served by uvicorn in a thread for the module's tests."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(store.engine), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(accept_downloads=True)
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def _sign_in(page, dashboard: str, token: str) -> None:
    page.goto(f"{dashboard}/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")


def test_a_wrong_token_is_refused_at_the_login_page(page, dashboard):
    page.goto(f"{dashboard}/")
    assert page.url == f"{dashboard}/login"
    _sign_in(page, dashboard, "a-guessed-token")
    sync_api.expect(page.get_by_role("alert")).to_contain_text("unknown token")
    _shot(page, "login-refused")
    page.goto(f"{dashboard}/")
    assert page.url == f"{dashboard}/login"


def test_sites_metrics_and_plots_appear(page, dashboard, store):
    _sign_in(page, dashboard, store.viewer)
    sites = page.locator("#sites")
    for name in ("site01", "site02", "site03"):
        sync_api.expect(sites).to_contain_text(name)
    sync_api.expect(sites).to_contain_text("matches the study")
    _shot(page, "overview")
    page.click(f"a[href='/runs/{store.finished_run}']")
    sync_api.expect(page.locator("#pooled")).to_contain_text("auc")
    sync_api.expect(page.locator("#per-site")).to_contain_text("site02")
    rendered = page.locator(".plotly-graph-div .main-svg")
    sync_api.expect(rendered.first).to_be_visible()
    assert page.locator(".plotly-graph-div").count() >= 3  # rounds, per site, calibration...
    _shot(page, "finished-run")


def test_live_progress_advances_while_the_run_runs_and_its_results_appear_when_it_ends(
    page, dashboard, store
):
    _sign_in(page, dashboard, store.viewer)
    page.goto(f"{dashboard}/runs/{store.running.run_id}")
    count = page.locator("#phase-count")
    before = int(count.inner_text())
    _shot(page, "running-run-before")
    store.advance()
    sync_api.expect(count).to_have_text(str(before + 1), timeout=10_000)
    sync_api.expect(page.locator("#run-status")).to_have_text("running")
    _shot(page, "running-run-after")
    store.finish()
    sync_api.expect(page.locator("#run-status")).to_have_text("finished", timeout=10_000)
    sync_api.expect(page.locator("#pooled")).to_contain_text("auc")  # reloaded with results
    _shot(page, "running-run-finished")


def test_the_metrics_csv_and_a_figure_as_svg_download(page, dashboard, store):
    _sign_in(page, dashboard, store.viewer)
    page.goto(f"{dashboard}/runs/{store.finished_run}")
    with page.expect_download() as download:
        page.click("#csv")
    saved = Path(download.value.path()).read_text()
    assert saved.startswith("scope,subject,step,name,value,ci_low,ci_high")
    assert "\npooled,,,auc," in saved
    plot = page.locator(".plotly-graph-div").first
    plot.hover()
    with page.expect_download() as figure:
        plot.locator('[data-title="Download plot"]').click()
    assert figure.value.suggested_filename.endswith(".svg")
    assert "<svg" in Path(figure.value.path()).read_text()[:2000]
