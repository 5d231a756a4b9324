"""Proxy tests' raw wire: the echo backend process, the attacker/victim routes (security-cases A3), raw
HTTP exchanges."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from gateway.wire.routing import Route, user_prefix
from tests.helpers.paths import BACKENDS, ROOT

ATTACKER = "sxxxx"  # a strict prefix of the victim's name (security-cases A3)
VICTIM = "sxxxxv"
TOKENS = {"tok-a": ATTACKER, "tok-v": VICTIM}
SECRETS = {ATTACKER: "secret-of-attacker", VICTIM: "secret-of-victim"}


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
    return Process([sys.executable, str(BACKENDS / "echo_backend.py"), str(port)])


def user_routes(base_url: str, backend_port: int) -> list[Route]:
    target = f"http://127.0.0.1:{backend_port}"
    return [
        Route(user_prefix(base_url, ATTACKER), target, "user", ATTACKER, "", None, SECRETS[ATTACKER]),
        Route(user_prefix(base_url, VICTIM), target, "user", VICTIM, "", None, SECRETS[VICTIM]),
        Route(user_prefix(base_url, VICTIM, "nb1"), target, "user", VICTIM, "nb1", None, SECRETS[VICTIM] + "-nb1"),
    ]


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


def split_response(raw: bytes) -> tuple[int, dict[str, list[str]], bytes]:
    """A raw HTTP/1 response: status, headers by lower-cased name (each a list), body as sent."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0].split(" ")[1]), headers, body
