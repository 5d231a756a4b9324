"""Shared fixtures for the proxy tests: real processes, real loopback sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.httpstrict import server_handler_args
from gateway.routing import Route, user_prefix
from tests.proxy_harness import Events, make_app

ROOT = Path(__file__).resolve().parent.parent
ATTACKER = "sxxxx"  # a strict prefix of the victim's name (security-cases A3)
VICTIM = "sxxxxv"
TOKENS = {"tok-a": ATTACKER, "tok-v": VICTIM}
SECRETS = {ATTACKER: "secret-of-attacker", VICTIM: "secret-of-victim"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process that prints ``ready`` once it serves; killed by pid."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            text=True,
        )
        line = self.proc.stdout.readline()  # bounded: the child exits or says ready
        if line.strip() != "ready":
            self.kill()
            raise RuntimeError(f"{args[1:]} did not start: {line!r}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def start_echo_backend(port: int) -> Process:
    return Process([sys.executable, str(ROOT / "tests" / "echo_backend.py"), str(port)])


@pytest.fixture(scope="module")
def echo_port():
    port = free_port()
    proc = start_echo_backend(port)
    yield port
    proc.kill()


def user_routes(base_url: str, backend_port: int) -> list[Route]:
    target = f"http://127.0.0.1:{backend_port}"
    return [
        Route(user_prefix(base_url, ATTACKER), target, "user", ATTACKER, "", None, SECRETS[ATTACKER]),
        Route(user_prefix(base_url, VICTIM), target, "user", VICTIM, "", None, SECRETS[VICTIM]),
        Route(user_prefix(base_url, VICTIM, "nb1"), target, "user", VICTIM, "nb1", None, SECRETS[VICTIM] + "-nb1"),
    ]


@pytest.fixture(params=["/", "/a%40b/"], ids=["base-root", "base-odd"])
def base_url(request) -> str:
    return request.param


@pytest.fixture
async def gateway(aiohttp_server, echo_port, base_url):
    """(server, events, base_url) for a gateway in front of the echo backend."""
    events = Events()
    app = make_app(
        routes=user_routes(base_url, echo_port),
        tokens=TOKENS,
        base_url=base_url,
        events=events,
        read_timeout=3.0,
        max_body_size=1024**3,
    )
    server = await aiohttp_server(app, **server_handler_args(keepalive_timeout=2.0))
    return server, events, base_url


def _complete_responses(data: bytes) -> int:
    """How many complete Content-Length-framed responses ``data`` holds."""
    count = 0
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return count
        head = data[:end].lower()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if len(data) < end + 4 + length:
            return count
        data = data[end + 4 + length :]
        count += 1


async def raw_exchange(port: int, data: bytes, *, limit: float = 10.0, responses: int | None = 1) -> bytes:
    """Send raw bytes; return what came back once ``responses`` complete
    responses arrived (None: until the server closes), or after ``limit``
    seconds (a bound, not an assertion)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        received = b""
        try:
            async with asyncio.timeout(limit):
                while chunk := await reader.read(65536):
                    received += chunk
                    if responses is not None and _complete_responses(received) >= responses:
                        break
        except (TimeoutError, ConnectionResetError):
            pass
        return received
    finally:
        writer.close()


def status_of(response: bytes) -> int:
    """Status code of the first response in raw bytes (0 if none)."""
    if not response.startswith(b"HTTP/1."):
        return 0
    return int(response.split(b" ", 2)[1])
