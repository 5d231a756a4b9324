"""The README's first run in a real Chromium: the gateway started with no config at all, the admin
password it prints, the spawn page's progress, JupyterLab (installed by default), and a notebook that
runs 1+1 through the real UI. Every wait is on a selector, a URL or an event, each bounded."""

from __future__ import annotations

import asyncio
import re

import aiohttp

from tests.browser.test_browser_pages import RECORD_PROGRESS, chromium, new_page, shot  # noqa: F401

LAB_TIMEOUT_MS = 120_000  # a cold JupyterLab (a few MB of script through the proxy) and a kernel start
PRINTED_PASSWORD = re.compile(r"created admin user 'admin' with password (\S+) \(shown once")


async def printed_password(gateway, timeout: float = 30) -> str:
    for _ in range(int(timeout / 0.1)):
        match = PRINTED_PASSWORD.search(gateway.log())
        if match:
            return match.group(1)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no admin password in the log:\n{gateway.log()[-2000:]}")


async def test_first_run_logs_in_to_jupyterlab_and_runs_a_notebook(gateway_process, chromium):  # noqa: F811
    gateway = gateway_process(None)  # `gateway`: no config file, embedded defaults
    gateway.start()
    await gateway.wait_ready()
    password = await printed_password(gateway)
    context, page = await new_page(chromium)
    await context.add_init_script(RECORD_PROGRESS)
    await page.goto(gateway.url + "/")
    assert page.url.startswith(gateway.url + "/hub/login")
    await page.get_by_label("Username").fill("admin")
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    # the spawn page with its progress bar, then JupyterLab: nobody configured /lab
    await page.wait_for_url(gateway.url + "/hub/spawn-pending/admin")
    await page.locator("#progress").wait_for()
    await shot(page, "first-run-spawn")
    await page.wait_for_url(gateway.url + "/user/admin/lab**", timeout=LAB_TIMEOUT_MS)
    seen = await page.evaluate("JSON.parse(sessionStorage.getItem('progress-seen') || '[]')")
    assert seen and seen[-1] == 100 and seen == sorted(seen), seen
    launcher = page.locator(".jp-LauncherCard[data-category='Notebook']").first
    await launcher.wait_for(timeout=LAB_TIMEOUT_MS)
    await shot(page, "first-run-jupyterlab")
    # a new notebook; a cell run before the kernel's websocket talks would be dropped, so wait for it
    kernel_talks = asyncio.Event()
    page.on("websocket", lambda ws: ws.on("framereceived", lambda _: kernel_talks.set())
            if "/channels" in ws.url else None)
    await launcher.click()
    await page.wait_for_url(gateway.url + "/user/admin/lab/tree/Untitled*.ipynb", timeout=LAB_TIMEOUT_MS)
    editor = page.locator(".jp-NotebookPanel .jp-Cell .cm-content").first
    await editor.wait_for(timeout=LAB_TIMEOUT_MS)
    await asyncio.wait_for(kernel_talks.wait(), LAB_TIMEOUT_MS / 1000)
    await editor.click()
    await page.keyboard.type("1+1")
    await page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-NotebookPanel .jp-OutputArea-output").first
    await output.wait_for(timeout=LAB_TIMEOUT_MS)
    assert (await output.text_content()).strip() == "2"
    await shot(page, "first-run-notebook-1-plus-1")
    await context.close()
    # stop the server through the API (the fixture also ends any server the gateway recorded)
    token = gateway.run_cli("token", "admin").stdout.strip().splitlines()[-1]
    async with aiohttp.ClientSession() as session:
        async with session.delete(gateway.url + "/hub/api/users/admin/server",
                                  headers={"Authorization": f"token {token}"}) as r:
            assert r.status in (202, 204), await r.text()
