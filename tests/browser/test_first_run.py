"""The README's first run in a real Chromium: the gateway started with no config at all, the admin
password it prints, the spawn page's progress, JupyterLab (installed by default), and a notebook that
runs 1+1 through the real UI. Every wait is on a selector, a URL or an event, each bounded."""

from __future__ import annotations

import asyncio
import re

import aiohttp

from tests.helpers.chromium import (LAB_TIMEOUT_MS, RECORD_PROGRESS, fill_login_form, new_page, progress_seen,
                                    run_one_plus_one, shot)

PRINTED_PASSWORD = re.compile(r"created admin user 'admin' with password (\S+) \(shown once")


async def printed_password(gateway, timeout: float = 30) -> str:
    for _ in range(int(timeout / 0.1)):
        match = PRINTED_PASSWORD.search(gateway.log())
        if match:
            return match.group(1)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no admin password in the log:\n{gateway.log()[-2000:]}")


async def test_first_run_logs_in_to_jupyterlab_and_runs_a_notebook(gateway_process, chromium):
    gateway = gateway_process(None)  # `gateway`: no config file, embedded defaults
    gateway.start()
    await gateway.wait_ready()
    password = await printed_password(gateway)
    context, page = await new_page(chromium)
    await context.add_init_script(RECORD_PROGRESS)
    await page.goto(gateway.url + "/")
    assert page.url.startswith(gateway.url + "/hub/login")
    await fill_login_form(page, "admin", password)
    # the spawn page with its progress bar, then JupyterLab: nobody configured /lab
    await page.wait_for_url(gateway.url + "/hub/spawn-pending/admin")
    await page.locator("#progress").wait_for()
    await shot(page, "first-run-spawn")
    await page.wait_for_url(gateway.url + "/user/admin/lab**", timeout=LAB_TIMEOUT_MS)
    seen = await progress_seen(page)
    assert seen and seen[-1] == 100 and seen == sorted(seen), seen
    await run_one_plus_one(page, gateway.url + "/user/admin/lab", shot_prefix="first-run-")
    await context.close()
    # stop the server through the API (the fixture also ends any server the gateway recorded)
    token = gateway.run_cli("token", "admin").stdout.strip().splitlines()[-1]
    async with aiohttp.ClientSession() as session:
        async with session.delete(gateway.url + "/hub/api/users/admin/server",
                                  headers={"Authorization": f"token {token}"}) as r:
            assert r.status in (202, 204), await r.text()
