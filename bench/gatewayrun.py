"""The real gateway as a child process, for the benchmark and the soak (tests use tests/conftest.py).

``RunningGateway(workdir, users, spawner_cmd=..., cpu="0")`` writes a config file, starts
``python -m gateway -f <config>`` (under ``taskset -c <cpu>`` when ``cpu`` is given: the user
servers it spawns inherit the pinning), waits for ``/hub/health``, then starts every user's
default server through the REST API.

Vocabulary:
- *admin token*: a config service (``admin: True``) token, used to start servers.
- *user token*: one per user (``JupyterHub.api_tokens``); every benchmark request carries it,
  so the gateway checks a token on every request.
- *backend*: what the gateway spawned for a user: its port, its pid and the secret the gateway
  presents to it. Read from ``/proc/<pid>/environ`` of the gateway's children (a benchmark-only
  shortcut, so that the very same server can be measured directly).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Backend:
    user: str
    pid: int
    port: int
    prefix: str
    secret: str


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process (``VmHWM`` for its peak), in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_fd_limit() -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class RunningGateway:
    """One gateway process with ``users`` each running a default server."""

    def __init__(self, workdir: Path, users: list[str], *, spawner_cmd: list[str] | None = None,
                 cpu: str | None = None, uvloop: bool = True, extra_config: str = "",
                 log_level: str = "WARNING") -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.users = users
        self.port = free_port()
        self.admin_token = secrets.token_hex(20)
        self.tokens = {u: secrets.token_hex(20) for u in users}
        config = "\n".join([
            "c = get_config()  # noqa",
            f"c.JupyterHub.services = [{{'name': 'bench-admin', 'api_token': {self.admin_token!r}, 'admin': True}}]",
            f"c.JupyterHub.api_tokens = {dict((t, u) for u, t in self.tokens.items())!r}",
            "c.JupyterHub.authenticator_class = 'dummy'",
            f"c.JupyterHub.log_level = {log_level!r}",
            "c.JupyterHub.cleanup_servers = True",
            "c.Gateway.create_first_admin = False",
            f"c.Gateway.uvloop = {uvloop!r}",
            "c.Spawner.start_timeout = 120",
            f"c.Spawner.cmd = {list(spawner_cmd)!r}" if spawner_cmd else "",
            extra_config,
        ])
        self.config_path = self.workdir / "gateway_config.py"
        self.config_path.write_text(config + "\n")
        self.log_path = self.workdir / "gateway.log"
        prefix = ["taskset", "-c", cpu] if cpu is not None else []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*prefix, sys.executable, "-m", "gateway", "-f", str(self.config_path), f"--port={self.port}",
                 "--ip=127.0.0.1"],
                cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=raise_fd_limit,
            )
        self.backends: dict[str, Backend] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, body: object = None, timeout: float = 150) -> tuple[int, object]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + "/hub/api" + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.admin_token}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                text = r.read()
                return r.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def start(self, timeout: float = 60) -> "RunningGateway":
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/hub/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("gateway did not start")
            time.sleep(0.1)
        for user in self.users:
            status, body = self.api("POST", f"/users/{user}/server")
            if status not in (201, 202):
                self.stop()
                raise RuntimeError(f"cannot start {user}'s server: {status} {body}")
        for user in self.users:
            while True:
                status, model = self.api("GET", f"/users/{user}")
                server = (model or {}).get("servers", {}).get("", {}) if status == 200 else {}
                if server.get("ready"):
                    break
                if time.monotonic() > deadline + 120:
                    self.stop()
                    raise RuntimeError(f"{user}'s server did not become ready: {model}")
                time.sleep(0.2)
        self.backends = self._find_backends()
        return self

    def _find_backends(self) -> dict[str, Backend]:
        found: dict[str, Backend] = {}
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        for pid in map(int, children):
            try:
                raw = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
            user = env.get("JUPYTERHUB_USER")
            if user in self.tokens:
                service = urlsplit(env["JUPYTERHUB_SERVICE_URL"])
                found[user] = Backend(user, pid, service.port, service.path, env["JUPYTER_TOKEN"])
        return found

    def user_url(self, user: str) -> str:
        return f"{self.url}/user/{user}/"

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for backend in self.backends.values():  # cleanup_servers stops them; make sure
            try:
                os.kill(backend.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
