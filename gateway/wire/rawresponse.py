"""A backend's answer written to an aiohttp client connection, framed by :func:`gateway.wire.http1.frame_response`.

The backend's header lines are written verbatim instead of being rebuilt by aiohttp: the client
sees the backend's ``Date``, ``Server``, CSP and the rest untouched, nothing is added but the
framing, exactly as a front door writes the same answer (one framing function for both paths).
A small answer (head and whole body already received) costs one join and one write; a streamed
one is written piece by piece (chunked when its length is unknown).

It is still a ``web.StreamResponse``: ``on_response_prepare`` signals run and headers that a
middleware or signal adds to ``response.headers`` are written after the backend's.

Private aiohttp internals, used here and nowhere else (checked against the pinned aiohttp minor
versions): ``StreamResponse._start`` (overridden: aiohttp would rebuild the head),
``BaseRequest._payload_writer`` and ``BaseRequest._prepare_hook`` (what ``_start`` itself uses),
``StreamResponse._keep_alive``/``_payload_writer``/``_req``/``_eof_sent`` (the state it keeps).
"""

from __future__ import annotations

from aiohttp import web

from gateway.wire.http1 import BODY_CHUNKED, BODY_LENGTH, BODY_NONE, LAST_CHUNK, chunk, frame_response

__all__ = ["RawResponse"]


class RawResponse(web.StreamResponse):
    """``head_block``: the backend's header lines (``Name: value\\r\\n`` each, already validated
    and filtered, without framing headers). ``body``: the whole body, or None when it is
    streamed afterwards with :meth:`write` and :meth:`write_eof`. ``length``: the length to
    announce when ``body`` is None or for a HEAD request (the backend's Content-Length)."""

    def __init__(self, status: int, reason: str, head_block: bytes, body: bytes | None, *,
                 length: int | None = None) -> None:
        super().__init__(status=status, reason=reason or None)
        self._head_block = head_block
        self._raw_body = body
        self._announced = length
        self._mode = BODY_NONE
        # body bytes (aiohttp's own count includes the head, and is known only once written: the
        # proxy counts a whole answer before aiohttp writes it)
        self._sent = len(body) if body else 0

    @property
    def body_length(self) -> int:
        """Body bytes sent, as a front door counts them (metrics, access log)."""
        return self._sent

    async def _start(self, request: web.BaseRequest) -> web.AbstractStreamWriter:  # type: ignore[override]
        self._req = request
        writer = self._payload_writer = request._payload_writer
        keep_alive = self._keep_alive
        if keep_alive is None:
            keep_alive = request.keep_alive
        await request._prepare_hook(self)
        block = self._head_block
        if self.headers:
            extra = []
            for name, value in self.headers.items():
                line = f"{name}: {value}"
                if "\r" in line or "\n" in line:
                    raise ValueError("newline in header")
                extra.append(line.encode("utf-8") + b"\r\n")
            block += b"".join(extra)
        head_request = request.method == "HEAD"
        body = self._raw_body
        length = self._announced if body is None or head_request else len(body)
        head, self._mode, self._keep_alive = frame_response(
            self.status, self.reason, block, head_request=head_request, length=length,
            keep_alive=keep_alive, http10=request.version.minor == 0)
        if body and self._mode == BODY_LENGTH:
            head += body
        else:
            self._sent = 0
        await writer.write(head)
        return writer

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """One piece of a streamed body (framed as the head announced)."""
        if not data or self._mode == BODY_NONE:
            return
        self._sent += len(data)
        await super().write(chunk(bytes(data)) if self._mode == BODY_CHUNKED else data)

    async def write_eof(self, data: bytes = b"") -> None:
        if data:
            await self.write(data)
        if self._mode == BODY_CHUNKED and not self._eof_sent and self._payload_writer is not None \
                and self._raw_body is None:
            await super().write(LAST_CHUNK)
        await super().write_eof()
