"""Login fixtures: a real slapd per test module (tests/login/slapd.py), browser-like clients."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.login.slapd import SLAPD, Slapd
from tests.helpers.pages import Browser


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    """A started slapd with the test directory; fails (never skips) under CI=true when it cannot start."""
    in_ci = os.environ.get("CI", "").lower() == "true"
    if not in_ci and not (os.path.exists(SLAPD) and shutil.which("slappasswd")):
        pytest.skip("slapd is not installed (apt install slapd ldap-utils); CI installs it")
    server = Slapd(tmp_path_factory.mktemp("slapd"))
    try:
        server.start()
    except Exception as e:  # SlapdUnavailable, OSError ...: any failure to start is loud
        pytest.fail(f"could not start slapd: {e}")
    yield server
    server.stop()


@pytest.fixture
async def browser_for():
    """make(gateway process) -> a Browser (its own cookie jar) for it; all closed at the end."""
    browsers: list[Browser] = []

    def make(proc) -> Browser:
        browser = Browser(proc.url)
        browsers.append(browser)
        return browser

    yield make
    for browser in browsers:
        await browser.close()
