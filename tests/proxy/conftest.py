"""The proxy tests run on both proxy paths: every gateway they start listens once with front doors
(the lean lane) and once without (``c.Gateway.front_doors = False``: aiohttp's handler answers
everything), and each test expects the same answers from both. Tests about the lane itself
parametrize ``front_door`` with ``[True]`` only."""

from __future__ import annotations

import pytest


@pytest.fixture(params=[True, False], ids=["front-door", "aiohttp"])
def front_door(request) -> bool:
    return request.param
