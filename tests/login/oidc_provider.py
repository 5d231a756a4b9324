"""A real OpenID Connect provider for the login tests: Panva's oidc-provider (npm), run by node.

``tests/login/oidc_idp/`` holds the node project (``npm ci`` there installs it; ``.ci/run`` does).
``start_oidc_provider(redirect_uris)`` starts ``server.mjs`` on a free loopback port with a fresh client
secret, waits for its ``ready`` line, and returns an ``OidcProvider`` with the URLs an operator would
configure. Accounts (with passwords and ``groups`` claims) are in ``oidc_idp/accounts.json``.

When node or the package is missing the fixture skips locally, and fails under CI=true.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

IDP_DIR = Path(__file__).resolve().parent / "oidc_idp"
ACCOUNTS: dict[str, dict] = json.loads((IDP_DIR / "accounts.json").read_text())
START_TIMEOUT = 30.0


def unavailable(reason: str) -> None:
    """Fail under CI (a clean-clone run must exercise the real provider), skip on a workstation."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"OIDC provider fixture cannot start: {reason}")
    pytest.skip(f"OIDC provider fixture cannot start: {reason}")


@dataclass
class OidcProvider:
    port: int
    client_id: str
    client_secret: str
    proc: subprocess.Popen
    output: list[str] = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def authorize_url(self) -> str:
        return self.issuer + "/auth"

    @property
    def token_url(self) -> str:
        return self.issuer + "/token"

    @property
    def userdata_url(self) -> str:
        return self.issuer + "/me"

    def password(self, name: str) -> str:
        return ACCOUNTS[name]["password"]

    def log(self) -> str:
        return "".join(self.output)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def start_oidc_provider(port: int, redirect_uris: list[str], *, client_id: str = "gateway-hub",
                        require_pkce: bool = True) -> OidcProvider:
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed")
    if not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        unavailable(f"oidc-provider is not installed (run `npm ci` in {IDP_DIR})")
    client_secret = secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "OIDC_PORT": str(port),
        "OIDC_CLIENT_ID": client_id,
        "OIDC_CLIENT_SECRET": client_secret,  # environment, not argv: other users can read argv
        "OIDC_REDIRECT_URIS": " ".join(redirect_uris),
        "OIDC_REQUIRE_PKCE": "1" if require_pkce else "0",
        "NO_COLOR": "1",
    }
    proc = subprocess.Popen([node, str(IDP_DIR / "server.mjs")], cwd=IDP_DIR, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    provider = OidcProvider(port, client_id, client_secret, proc)
    ready = threading.Event()

    def read_output() -> None:  # keeps the pipe drained for the provider's lifetime
        assert proc.stdout is not None
        for line in proc.stdout:
            provider.output.append(line)
            if line.startswith("ready "):
                ready.set()
        ready.set()  # exited

    threading.Thread(target=read_output, daemon=True).start()
    if not ready.wait(START_TIMEOUT) or proc.poll() is not None:
        provider.stop()
        unavailable(f"server.mjs did not become ready:\n{provider.log()[-2000:]}")
    return provider
