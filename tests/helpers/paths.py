"""Where things are: the repository, the tests, the programs the tests run as processes."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
BACKENDS = TESTS / "backends"
DATA = TESTS / "data"
# The fast fake single-user server, as a spawner command.
FAKE_SERVER = (sys.executable, str(BACKENDS / "fake_server.py"))
