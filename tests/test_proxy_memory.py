"""Streaming keeps the gateway's memory flat: 256 MiB up and down through a
gateway process, whose peak RSS (VmHWM) must not grow with the body size."""

from __future__ import annotations

import hashlib
import sys

import aiohttp

from tests.conftest import ROOT, Process, free_port, start_echo_backend

SIZE = 256 * 1024 * 1024
AUTH = {"Authorization": "token tok-big"}


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


async def test_large_bodies_stream_with_flat_memory():
    backend_port, gateway_port = free_port(), free_port()
    backend = start_echo_backend(backend_port)
    gateway = Process([sys.executable, "-m", "tests.proxy_harness", str(gateway_port), str(backend_port)])
    url = f"http://127.0.0.1:{gateway_port}/user/big/"
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "warm", headers=AUTH) as r:  # pools, imports, first request
                assert r.status == 200
            before = peak_rss_kib(gateway.pid)

            async def produce():
                block = b"u" * (1024 * 1024)
                for _ in range(SIZE // len(block)):
                    yield block

            async with s.put(url + "upload", data=produce(), headers={**AUTH, "Content-Length": str(SIZE)}) as r:
                seen = await r.json()
            assert seen["body_length"] == SIZE
            assert seen["body_sha256"] == hashlib.sha256(b"u" * SIZE).hexdigest()

            got = 0
            async with s.get(url + f"download?n={SIZE}", headers=AUTH) as r:
                async for chunk in r.content.iter_chunked(1024 * 1024):
                    got += len(chunk)
            assert got == SIZE
            after = peak_rss_kib(gateway.pid)
    finally:
        gateway.kill()
        backend.kill()
    # bounded buffers: the peak grows by a few MiB at most, never by the body size
    print("peak RSS KiB before/after", before, after)
    assert after - before < 32 * 1024, (before, after)
