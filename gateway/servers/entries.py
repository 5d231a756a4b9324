"""The in-memory record of each (user, server name), the progress events of its current start, and the
bounded cancelling of pending starts.

An entry's events are what ``GET .../progress`` streams: every event of the start from the first,
ending with a ``ready`` or ``failed`` one; ``Entry.changed`` wakes the streams when one is added.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.spawners import procs
from gateway.spawners.base import Spawner
from gateway.vocab.serialize import user_url

log = logging.getLogger("gateway.servers")


def describe(user_name: str, server_name: str) -> str:
    """JupyterHub's way of naming a server in messages: 'alice' or 'alice:nb'."""
    return f"{user_name}:{server_name}" if server_name else user_name


@dataclass
class Entry:
    user_name: str
    server_name: str
    server_id: int
    user_id: int
    spawner: Spawner | None = None
    pending: str | None = None  # 'spawn' | 'stop' | None
    ready: bool = False
    task: asyncio.Task | None = None
    watcher: asyncio.Task | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    failure: str | None = None
    failure_status: int = 500  # 400 when the user's options were refused
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    spawn_started: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return (self.user_name, self.server_name)

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.notify()

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


def ready_event(base_url: str, entry: Entry) -> dict[str, Any]:
    prefix = user_url(base_url, entry.user_name, entry.server_name)
    return {"progress": 100, "ready": True, "message": f"Server ready at {prefix}",
            "html_message": f'Server ready at <a href="{html.escape(prefix)}">{html.escape(prefix)}</a>',
            "url": prefix}


def last_ready_event(base_url: str, entry: Entry) -> dict[str, Any]:
    """A ready server's ready event: the one its start emitted, else one made now (a restored server)."""
    last = entry.events[-1] if entry.events else None
    return last if last is not None and last.get("ready") else ready_event(base_url, entry)


async def progress_events(entry: Entry, base_url: str) -> AsyncIterator[dict[str, Any]]:
    """Events of the entry's current start (all of them, from the first), ending with ready or failed."""
    index = 0
    while True:
        changed = entry.changed
        while index < len(entry.events):
            event = entry.events[index]
            index += 1
            yield event
            if event.get("ready") or event.get("failed"):
                return
        if entry.pending != "spawn":
            if entry.ready:
                yield last_ready_event(base_url, entry)
            return
        await changed.wait()


def encode_event(event: Mapping[str, Any]) -> bytes:
    """One progress event as a server-sent event."""
    return f"data: {json.dumps(event)}\n\n".encode()


async def cancel_starts(entries: list[Entry], bound: float = 5.0) -> None:
    """Cancel pending starts, within ``bound`` seconds. A cancellation can be lost when it lands just
    as a timeout fires (asyncio.wait_for on Python 3.11), so cancel again until the task ends; a start
    that still runs after the bound has its process group killed, so the gateway's stop stays bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    tasks = {e.task for e in entries if e.task is not None and not e.task.done()}
    while tasks and loop.time() < deadline:
        for task in tasks:
            task.cancel()
        _, tasks = await asyncio.wait(tasks, timeout=0.2)
    for entry in entries:
        if entry.task in tasks and entry.spawner is not None and entry.spawner.pid:
            log.warning("Start of %s did not end when cancelled: killing it", describe(*entry.key))
            procs.signal_group(entry.spawner.pid, signal.SIGKILL)
