"""Parsing a backend's HTTP/1.1 response head: pure functions, no I/O.

Backends are user-controlled code, so parsing is strict: duplicate or
malformed lengths, length together with chunked, transfer codings other than
``chunked``, obs-fold, bare CR or LF and control characters are all refused
(:class:`MalformedHead`) rather than interpreted. Validation runs as a few
C-level passes over the whole head (``bytes.translate``, ``str.count``) because
this is on the hot path of every proxied request.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MalformedHead", "ResponseHead", "parse_response_head"]

# allowed in a response head: visible ASCII, space, tab, obs-text, CR, LF
_HEAD_CHARS = bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100)) + b"\t\r\n"
_TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


class MalformedHead(ValueError):
    """The response head is malformed or ambiguous."""


@dataclass(slots=True)
class ResponseHead:
    """A parsed response head. ``headers`` keeps order, case and repeats;
    ``length`` is the Content-Length (None when chunked or close-delimited)."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    length: int | None
    chunked: bool
    keep_alive: bool


def parse_response_head(raw: bytes) -> ResponseHead:
    """Parse a status line and header block (without the final empty line).

    Raises :class:`MalformedHead` for anything a second parser could read
    differently.
    """
    # C-level checks over the whole head first: only visible characters,
    # space, tab and obs-text, and CR/LF only as CRLF line ends (so no
    # bare CR or LF a second parser could split on differently)
    if raw.translate(None, _HEAD_CHARS):
        raise MalformedHead("control character in response head")
    text = raw.decode("latin-1")
    crlf = text.count("\r\n")
    if text.count("\r") != crlf or text.count("\n") != crlf:
        raise MalformedHead("bare CR or LF in response head")
    lines = text.split("\r\n")
    version, _, rest = lines[0].partition(" ")
    status, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0") or len(status) != 3 or not status.isdigit() or status[0] == "0":
        raise MalformedHead("bad status line")
    headers: list[tuple[str, str]] = []
    append = headers.append
    length: int | None = None
    te: str | None = None
    conn_tokens = ""
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not (name.isascii() and name.replace("-", "").isalnum()):
            # rarer token characters; also rejects obs-fold and "Name :"
            if not colon or not name or name.encode("latin-1").translate(None, _TOKEN_CHARS):
                raise MalformedHead("bad header line")
        value = value.strip(" \t")
        append((name, value))
        n = len(name)
        # only three names matter for framing; test the length first
        if n == 14 and name.lower() == "content-length":
            if not (value.isascii() and value.isdigit()) or len(value) > 18:
                raise MalformedHead("bad Content-Length")
            v = int(value)
            if length is not None and v != length:
                raise MalformedHead("conflicting Content-Length")
            length = v
        elif n == 17 and name.lower() == "transfer-encoding":
            if te is not None:
                raise MalformedHead("repeated Transfer-Encoding")
            te = value.lower()
        elif n == 10 and name.lower() == "connection":
            conn_tokens = value.lower()
    chunked = False
    if te is not None:
        if te != "chunked" or length is not None:
            raise MalformedHead("unsupported Transfer-Encoding")
        chunked = True
    keep_alive = version == "HTTP/1.1" and "close" not in conn_tokens
    return ResponseHead(int(status), reason, headers, length, chunked, keep_alive)
