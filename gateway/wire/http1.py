"""HTTP/1.1 heads: parsing a backend's responses and the plain requests the front door takes;
framing a backend's answer for the client; writing the gateway's own short text answers.

Pure functions, no I/O.

Backends are user-controlled code, so parsing is strict: duplicate or
malformed lengths, length together with chunked, transfer codings other than
``chunked``, obs-fold, bare CR or LF and control characters are all refused
(:class:`MalformedHead`) rather than interpreted. Validation runs as a few
C-level passes over the whole head (``bytes.translate``, ``str.count``) because
this is on the hot path of every proxied request.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

__all__ = ["MalformedHead", "ResponseHead", "parse_response_head", "PlainRequest", "parse_plain_request",
           "NO_BODY_STATUS", "frame_response", "chunk", "LAST_CHUNK", "plain_text_response", "phrase"]

# allowed in a response head: visible ASCII, space, tab, obs-text, CR, LF
_HEAD_CHARS = bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100)) + b"\t\r\n"
_VISIBLE_ASCII = bytes(range(0x21, 0x7F))
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


# ---------------------------------------------------------------- requests

# methods the front door forwards itself; anything else (CONNECT, TRACE, extension methods) goes
# to aiohttp, which answers or refuses it
_PLAIN_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS"})
# headers that make a request other than plain: framing and protocol switches aiohttp handles
_NOT_PLAIN = frozenset({b"transfer-encoding", b"upgrade", b"expect"})
MAX_PLAIN_HEADERS = 100


@dataclass(slots=True)
class PlainRequest:
    """A request head in the plain subset (see :func:`parse_plain_request`).

    ``headers`` keeps each header's name and value bytes as sent (value trimmed of spaces),
    in order; ``content_length`` is None without the header; ``authorization`` is the value of
    the one Authorization header, if any; ``size`` the head's length in bytes."""

    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    host: str
    content_length: int | None
    keep_alive: bool
    authorization: str | None
    size: int


def parse_plain_request(raw: bytes) -> PlainRequest | None:
    """Parse a request line and header block (without the final empty line), or None.

    None means "not plain": anything beyond an HTTP/1.1 request with a common method, an
    origin-form target of visible ASCII, exactly one non-empty Host, at most one decimal Content-Length, no
    Transfer-Encoding, Upgrade or Expect, and well-formed header lines. Such requests are left
    to a full parser (aiohttp's), which answers or refuses them; so this one never has to decide
    an ambiguous case, and what it accepts every parser reads the same way.
    """
    if raw.translate(None, _HEAD_CHARS):
        return None
    crlf = raw.count(b"\r\n")
    if raw.count(b"\r") != crlf or raw.count(b"\n") != crlf:
        return None
    lines = raw.split(b"\r\n")
    if len(lines) > MAX_PLAIN_HEADERS + 1:
        return None
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        return None
    method, target, version = parts
    # visible ASCII only: a raw UTF-8 byte could be decoded two ways (route choice must not be),
    # and a TAB is a separator to backends that split the request line on any whitespace
    if (version != b"HTTP/1.1" or method not in _PLAIN_METHODS or target[:1] != b"/"
            or target.translate(None, _VISIBLE_ASCII)):
        return None
    headers: list[tuple[bytes, bytes]] = []
    append = headers.append
    host: bytes | None = None
    length: int | None = None
    keep_alive = True
    authorization: bytes | None = None
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name.replace(b"-", b"").isalnum():
            return None  # also obs-fold, "Name :" and rarer token characters: aiohttp decides those
        value = value.strip(b" \t")
        append((name, value))
        lname = name.lower()
        if lname == b"host":
            if host is not None or not value:
                return None
            host = value
        elif lname == b"content-length":
            if length is not None or not value.isdigit() or len(value) > 18:
                return None
            length = int(value)
        elif lname == b"authorization":
            if authorization is not None:
                return None
            authorization = value
        elif lname == b"connection":
            tokens = {t.strip() for t in value.lower().split(b",")}
            if b"upgrade" in tokens:
                return None
            if b"close" in tokens:
                keep_alive = False
        elif lname in _NOT_PLAIN:
            return None
    # non-ASCII bytes in Host or Authorization: aiohttp's path refuses them (400)
    if host is None or not host.isascii() or authorization is not None and not authorization.isascii():
        return None
    return PlainRequest(
        method.decode("ascii"), target.decode("latin-1"), headers, host.decode("latin-1"), length,
        keep_alive, authorization.decode("latin-1") if authorization is not None else None, len(raw),
    )


# ---------------------------------------------------------------- framing a backend's answer

# statuses whose responses never carry a body (nor, from us, a Content-Length)
NO_BODY_STATUS = frozenset({204, 304})

BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_TO_CLOSE = range(4)


def frame_response(status: int, reason: str, header_block: bytes, *, head_request: bool, length: int | None,
                   keep_alive: bool, http10: bool = False) -> tuple[bytes, int, bool]:
    """The head the client gets for a backend's answer, and how its body follows.

    The one framing of proxied answers, for front doors and aiohttp's path alike. ``header_block``:
    the backend's filtered header lines; ``length``: the body's length when known (the whole body
    received, or the backend's Content-Length), None for a body streamed to its end. Returns
    (head bytes, one of BODY_NONE/BODY_LENGTH/BODY_CHUNKED/BODY_TO_CLOSE, keep_alive): a body of
    unknown length goes chunked to HTTP/1.1 clients and close-delimited to HTTP/1.0 ones; no body
    for HEAD requests (their Content-Length announced when known), 1xx, 204 and 304.
    """
    lines = [b"HTTP/1.%d %d %s\r\n" % (0 if http10 else 1, status, (reason or phrase(status)).encode("latin-1")),
             header_block]
    if status in NO_BODY_STATUS or status < 200:
        mode = BODY_NONE
    elif head_request:
        mode = BODY_NONE
        if length is not None:
            lines.append(b"Content-Length: %d\r\n" % length)
    elif length is not None:
        mode = BODY_LENGTH
        lines.append(b"Content-Length: %d\r\n" % length)
    elif http10:
        mode, keep_alive = BODY_TO_CLOSE, False
    else:
        mode = BODY_CHUNKED
        lines.append(b"Transfer-Encoding: chunked\r\n")
    if not keep_alive:
        if not http10:
            lines.append(b"Connection: close\r\n")
    elif http10:
        lines.append(b"Connection: keep-alive\r\n")
    lines.append(b"\r\n")
    return b"".join(lines), mode, keep_alive


def chunk(data: bytes) -> bytes:
    """One piece of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


# ---------------------------------------------------------------- our own answers


def plain_text_response(status: int, text: str, *, keep_alive: bool) -> bytes:
    """A complete text/plain response, as aiohttp writes its own error answers."""
    body = text.encode()
    close = b"" if keep_alive else b"Connection: close\r\n"
    return (b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nDate: %s\r\n%s\r\n%s"
            % (status, phrase(status).encode(), len(body), formatdate(usegmt=True).encode(), close, body))


def phrase(status: int) -> str:
    """The standard reason phrase of ``status`` ("" for an unknown one)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
