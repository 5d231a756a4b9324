"""Driving Debian's Chromium (/usr/bin/chromium) through Playwright: the browser, pages, screenshots,
and the JupyterLab journey (a new notebook whose cell runs 1+1) that several tests end with.

The ``chromium`` fixture itself is in tests/conftest.py; it fails, never skips, under CI=true when the
browser is missing. Every wait here is bounded (the context's default timeout, or an explicit one).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from gateway.identity.caches import SESSION_COOKIE

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
TIMEOUT_MS = 15_000
LAB_TIMEOUT_MS = 120_000  # a cold JupyterLab (a few MB of script through the proxy) and a kernel start


def require_chromium() -> None:
    if os.path.exists(CHROMIUM):
        return
    message = f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install -y chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


async def new_page(chromium, *, phone: bool = False, timeout_ms: int = TIMEOUT_MS):
    """A fresh context (its own cookies) and a page in it; dialogs (confirm() on revoke/delete) accepted."""
    viewport = {"width": 375, "height": 740} if phone else {"width": 1200, "height": 820}
    context = await chromium.new_context(viewport=viewport, reduced_motion="reduce")
    context.set_default_timeout(timeout_ms)
    page = await context.new_page()
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    return context, page


async def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def session_cookie(context) -> str | None:
    return next((c["value"] for c in await context.cookies() if c["name"] == SESSION_COOKIE), None)


async def run_one_plus_one(page, lab_url: str, shot_prefix: str) -> None:
    """From JupyterLab's launcher at ``lab_url`` (…/user/<name>/lab): a new notebook, 1+1 typed into its
    first cell and run, and the output 2. JupyterLab drops a cell run before the notebook's kernel
    session exists; the kernel's websocket (through the proxy) opens once it does, so its first
    message from the kernel is the signal to type."""
    launcher = page.locator(".jp-LauncherCard[data-category='Notebook']").first
    await launcher.wait_for(timeout=LAB_TIMEOUT_MS)
    await shot(page, f"{shot_prefix}jupyterlab")
    kernel_talks = asyncio.Event()
    page.on("websocket", lambda ws: ws.on("framereceived", lambda _: kernel_talks.set())
            if "/channels" in ws.url else None)
    await launcher.click()
    await page.wait_for_url(lab_url + "/tree/Untitled*.ipynb", timeout=LAB_TIMEOUT_MS)
    editor = page.locator(".jp-NotebookPanel .jp-Cell .cm-content").first
    await editor.wait_for(timeout=LAB_TIMEOUT_MS)
    await asyncio.wait_for(kernel_talks.wait(), LAB_TIMEOUT_MS / 1000)
    await editor.click()
    await page.keyboard.type("1+1")
    await page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-NotebookPanel .jp-OutputArea-output").first
    await output.wait_for(timeout=LAB_TIMEOUT_MS)
    assert (await output.text_content()).strip() == "2"
    await shot(page, f"{shot_prefix}notebook-1-plus-1")


async def fill_login_form(page, name: str, password: str) -> None:
    """The hub's own login form (password authenticators and LDAP), already open in ``page``."""
    await page.get_by_label("Username").fill(name)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()


# Records every value the progress bar shows in sessionStorage, which outlives the navigation to the
# server (same origin, same tab), so a test can check the bar reached 100 before it left.
RECORD_PROGRESS = """
document.addEventListener("DOMContentLoaded", () => {
  const bar = document.getElementById("progress");
  if (!bar) return;
  new MutationObserver(() => {
    const seen = JSON.parse(sessionStorage.getItem("progress-seen") || "[]");
    seen.push(Number(bar.getAttribute("aria-valuenow")));
    sessionStorage.setItem("progress-seen", JSON.stringify(seen));
  }).observe(bar, { attributes: true, attributeFilter: ["aria-valuenow"] });
});
"""


async def progress_seen(page) -> list[int]:
    return await page.evaluate("JSON.parse(sessionStorage.getItem('progress-seen') || '[]')")
