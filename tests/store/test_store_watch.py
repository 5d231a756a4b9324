"""The store's watcher of other writers: another process's commit bumps the cache counters, the
gateway's own writes (activity flushes every few seconds) do not, so identity caches stay warm."""

from __future__ import annotations

import asyncio
import time

from gateway.store import Store


async def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout  # a bound against hangs, not a timing assertion
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_own_writes_keep_caches_other_writers_bump_them(tmp_path):
    path = str(tmp_path / "db.sqlite")
    store = await Store.open(path)
    other = await Store.open(path)
    watcher = asyncio.create_task(store.watch_other_writers(interval=0.05))
    try:
        user = await store.create_user("ann")
        await asyncio.sleep(0.2)  # the watcher has looked at least once since
        versions = (store.authz_version, store.revocation_version)
        for _ in range(5):  # what the activity recorder writes
            await store.touch_users({user.id: time.time()})
            await asyncio.sleep(0.06)
        assert (store.authz_version, store.revocation_version) == versions
        await other.create_user("bo")  # another connection, as `gateway token` in another process
        assert await wait_for(lambda: store.authz_version > versions[0] and store.revocation_version > versions[1])
    finally:
        watcher.cancel()
        await other.close()
        await store.close()
