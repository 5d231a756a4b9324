"""A complete backend response written to the client as one block of bytes.

For the common small response (head and whole body already received) the
backend's header lines are written verbatim instead of being rebuilt by
aiohttp: the client sees the backend's ``Date``, ``Server``, CSP and the rest
untouched, nothing is added but the framing, and the cost is one join and one
write (aiohttp's generic header preparation is most of a small proxied
request's CPU time).

It is still a ``web.StreamResponse``: ``on_response_prepare`` signals run and
headers that a middleware or signal adds to ``response.headers`` are written
after the backend's.
"""

from __future__ import annotations

from aiohttp import web

__all__ = ["RawResponse"]

_NO_BODY_STATUS = frozenset({204, 304})


class RawResponse(web.StreamResponse):
    """``head_block``: the backend's header lines (``Name: value\\r\\n`` each, already
    validated and filtered, without framing headers); ``body``: the whole body.
    ``length`` is the Content-Length to announce for a HEAD response."""

    def __init__(self, status: int, reason: str, head_block: bytes, body: bytes, *, length: int | None = None) -> None:
        super().__init__(status=status, reason=reason or None)
        self._head_block = head_block
        self._raw_body = body
        self._head_length = length

    async def _start(self, request: web.BaseRequest) -> web.AbstractStreamWriter:  # type: ignore[override]
        self._req = request
        writer = self._payload_writer = request._payload_writer
        keep_alive = self._keep_alive
        if keep_alive is None:
            keep_alive = self._keep_alive = request.keep_alive
        await request._prepare_hook(self)
        version = request.version
        status = self.status
        parts = [
            f"HTTP/{version.major}.{version.minor} {status} {self.reason}\r\n".encode("latin-1"),
            self._head_block,
        ]
        for name, value in self.headers.items():
            line = f"{name}: {value}"
            if "\r" in line or "\n" in line:
                raise ValueError("newline in header")
            parts.append(line.encode("utf-8") + b"\r\n")
        body = self._raw_body
        if request.method == "HEAD":
            if self._head_length is not None and status not in _NO_BODY_STATUS:
                parts.append(b"Content-Length: %d\r\n" % self._head_length)
            body = b""
        elif status in _NO_BODY_STATUS or status < 200:
            body = b""
        else:
            parts.append(b"Content-Length: %d\r\n" % len(body))
        if not keep_alive:
            if version.minor == 1:
                parts.append(b"Connection: close\r\n")
        elif version.minor == 0:
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(b"\r\n")
        if body:
            parts.append(body)
        await writer.write(b"".join(parts))
        return writer
