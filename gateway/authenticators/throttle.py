"""LoginThrottle: failed logins counted per user name and per client address, in memory.

Rule (sliding window): after ``per_user`` failures for one user name, or ``per_address``
failures from one address, within ``window`` seconds, further attempts for that name / from that
address are refused without checking the password until the oldest counted failure leaves the
window. A success clears the user's count (not the address's). Memory is bounded: at most
``max_keys`` names and addresses are tracked, the least recently failed dropped first.

Trade-off, said plainly: anyone can lock a user name out for ``window`` seconds by failing on
purpose; that is the price of stopping password guessing without accounts of attempts on disk.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

PER_USER = 5
PER_ADDRESS = 20
WINDOW = 60.0


class LoginThrottle:
    def __init__(self, *, per_user: int = PER_USER, per_address: int = PER_ADDRESS, window: float = WINDOW,
                 max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.per_user = per_user
        self.per_address = per_address
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def _wait(self, key: str, limit: int, now: float) -> float:
        times = self._recent(key, now)
        if len(times) < limit:
            return 0.0
        return max(0.0, times[-limit] + self.window - now)

    def retry_after(self, user: str, address: str | None) -> float:
        """Seconds until an attempt for ``user`` from ``address`` may be checked; 0 if now."""
        now = self.clock()
        wait = self._wait("u:" + user, self.per_user, now)
        if address:
            wait = max(wait, self._wait("a:" + address, self.per_address, now))
        return wait

    def failure(self, user: str, address: str | None) -> None:
        now = self.clock()
        for key in ("u:" + user, "a:" + address if address else None):
            if key is None:
                continue
            times = self._failures.pop(key, None) or deque()
            times.append(now)
            limit = self.per_user if key.startswith("u:") else self.per_address
            while len(times) > limit:
                times.popleft()
            self._failures[key] = times  # most recent failure last
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def success(self, user: str) -> None:
        self._failures.pop("u:" + user, None)
