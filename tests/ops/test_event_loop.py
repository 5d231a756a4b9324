"""The CLI's event loop: uvloop when Gateway.uvloop is on and uvloop is installed, asyncio's otherwise."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from gateway.cli import run_loop
from gateway.config import load_settings


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_switch():
    assert run_loop(loop_module(), False).startswith("asyncio")
    if importlib.util.find_spec("uvloop") is None:
        pytest.skip("uvloop is not installed")
    assert run_loop(loop_module(), True).startswith("uvloop")


def test_uvloop_config_key(tmp_path):
    assert load_settings(None, {}).uvloop is True
    config = tmp_path / "c.py"
    config.write_text("c.Gateway.uvloop = False\n")
    assert load_settings(str(config), {}).uvloop is False
