"""A database that cannot be written: writes answer 503 with a clear message, reads keep working.

Disk full is real: the database lives on a small tmpfs filled to the last byte (needs the
right to mount, which CI's root has; skipped otherwise). A read-only database cannot be made
real at run time: file modes do not stop root, and a filesystem with the database open for
writing cannot be remounted read-only (EBUSY). So that case uses the store's documented
fault-injection hook ``Store.reopen_writer(read_only=True)``, which reopens the writer
connection through sqlite's ``mode=ro`` URI: sqlite then refuses writes exactly as on a
read-only file.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from gateway import keys

WRITE_FAILED = "The database cannot be written: "


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 4 MiB tmpfs mounted for this test, or skip when mounting is not allowed."""
    mountpoint = tmp_path / "fs"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mountpoint)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full (bounded by its size); return it."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        for _ in range(10_000):  # 640 MiB at most, far beyond the 4 MiB filesystem
            try:
                f.write(chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
        for _ in range(100_000):  # then byte by byte into the last partial block
            try:
                if f.write(b"\0") == 0:
                    break
            except OSError:
                break
    return filler


async def write_named_server(hub, token: str, name: str, size: int = 0):
    body = {"user_options": {"blob": "x" * size}} if size else None
    return await hub.api("PUT", f"/users/alice/servers/{name}", token=token, json_body=body)


async def test_disk_full_writes_503_reads_work(start_hub, small_fs, tmp_path):
    hub = await start_hub(db_url=f"sqlite:///{small_fs / 'gateway.sqlite'}", allow_named_servers=True,
                          authenticate_prometheus=False)
    token = await hub.new_token("alice", admin=True)
    assert (await write_named_server(hub, token, "before")).status == 201
    filler = fill(small_fs)
    try:
        failed = None
        for i in range(5):  # a write that fits in space sqlite already holds may still succeed
            r = await write_named_server(hub, token, f"full{i}", size=600_000)
            if r.status == 503:
                failed = r
                break
            assert r.status == 201, r.text
        assert failed is not None, "no write failed on a full disk"
        assert failed.body == {"status": 503, "message": failed.body["message"]}
        assert failed.body["message"].startswith(WRITE_FAILED) and "full" in failed.body["message"]
        # reads keep working
        r = await hub.api("GET", "/users/alice/servers/before", token=token)
        assert r.status == 200 and r.body["name"] == "before"
        assert (await hub.api("GET", "/user", token=token)).status == 200
        async with hub.session.get(hub.url + "/hub/metrics") as m:
            assert m.status == 200
    finally:
        filler.unlink()
    # space back: writes work again, nothing half-written
    assert (await write_named_server(hub, token, "after", size=600_000)).status == 201
    user = await hub.store.get_user("alice")
    names = {s.name for s in (await hub.store.servers_of_users([user.id]))[user.id]}
    assert {"before", "after"} <= names
    integrity = await hub.store._reader.execute_fetchall("PRAGMA integrity_check")
    assert integrity[0][0] == "ok"


async def test_read_only_database_writes_503_reads_work(start_hub):
    hub = await start_hub(allow_named_servers=True)
    token = await hub.new_token("alice", admin=True)
    assert (await write_named_server(hub, token, "before")).status == 201
    store = hub.app[keys.STORE]
    await store.reopen_writer(read_only=True)  # fault injection: see the module docstring
    try:
        r = await write_named_server(hub, token, "ro")
        assert r.status == 503
        assert r.body["message"].startswith(WRITE_FAILED) and "readonly" in r.body["message"]
        assert r.headers["Content-Type"].startswith("application/json")
        r = await hub.api("DELETE", "/users/alice/servers/before", token=token, json_body={"remove": True})
        assert r.status == 503
        r = await hub.api("GET", "/users/alice/servers/before", token=token)
        assert r.status == 200
        assert (await hub.api("GET", "/user", token=token)).status == 200
    finally:
        await store.reopen_writer(read_only=False)
    # a body larger than one read of the socket (regression: json_body used to read only the first chunk)
    assert (await write_named_server(hub, token, "after", size=600_000)).status == 201
