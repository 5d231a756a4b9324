"""Login fixtures: a real slapd per test module (tests/login/slapd.py), (browser-like clients: the root conftest's ``browsers``)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.login.slapd import SLAPD, Slapd


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
