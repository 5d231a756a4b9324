"""Strict parsing of backend response heads (pure function)."""

import pytest

from gateway.wire.http1 import MalformedHead, parse_response_head

REFUSED = [
    b"HTTP/1.1 200 OK\r\nContent-Length : 2",  # space before colon
    b"HTTP/1.1 200 OK\r\nX: a\r\n b",  # obs-fold
    b"HTTP/1.1 200 OK\r\nX: a\nY: b",  # bare LF
    b"HTTP/1.1 200 OK\r\nX: a\rY: b",  # bare CR
    b"HTTP/1.1 200 OK\r\nX: a\x00",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3",
    b"HTTP/1.1 200 OK\r\nContent-Length: +2",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
    b"HTTP/2 200 OK",
    b"HTTP/1.1 20 OK",
    b"HTTP/1.1 200 OK\r\n: x",
    b"HTTP/1.1 200 OK\r\nX@Y: x",
]


@pytest.mark.parametrize("raw", REFUSED)
def test_ambiguous_heads_are_refused(raw):
    with pytest.raises(MalformedHead):
        parse_response_head(raw)


def test_head_fields_kept_verbatim():
    head = parse_response_head(
        b"HTTP/1.1 201 Created\r\nX-Odd_Name!: v\t \r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
        b"Content-Security-Policy: frame-ancestors 'self'\r\nContent-Length: 5"
    )
    assert (head.status, head.reason, head.length, head.chunked, head.keep_alive) == (201, "Created", 5, False, True)
    assert head.headers == [
        ("X-Odd_Name!", "v"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Content-Security-Policy", "frame-ancestors 'self'"),
        ("Content-Length", "5"),
    ]


def test_keep_alive_and_chunked():
    assert parse_response_head(b"HTTP/1.0 200 OK").keep_alive is False
    assert parse_response_head(b"HTTP/1.1 200 OK\r\nConnection: close").keep_alive is False
    assert parse_response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked").chunked is True
    assert parse_response_head(b"HTTP/1.1 204").reason == ""


# ---------------------------------------------------------------- plain requests (front doors)

from gateway.wire.http1 import parse_plain_request  # noqa: E402

NOT_PLAIN = [
    b"GET /x HTTP/1.0\r\nHost: h",  # HTTP/1.0: aiohttp's
    b"CONNECT h:443 HTTP/1.1\r\nHost: h",
    b"BREW /x HTTP/1.1\r\nHost: h",
    b"GET http://h/x HTTP/1.1\r\nHost: h",  # absolute form
    b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h",  # raw UTF-8 in the target
    b"GET /x?a\tHTTP/1.0\tb HTTP/1.1\r\nHost: h",  # TAB: a separator to some backends
    b"GET /x HTTP/1.1",  # no Host
    b"GET /x HTTP/1.1\r\nHost: ",
    b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b",
    b"GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1",
    b"GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: +1",
    b"GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1,1",
    b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked",
    b"GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade",
    b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: upgrade",
    b"PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5",
    b"GET /x HTTP/1.1\r\nHost: h\r\nX: a\r\n b",  # obs-fold
    b"GET /x HTTP/1.1\r\nHost: h\r\nX : a",
    b"GET /x HTTP/1.1\r\nHost: h\nX: a",  # bare LF
    b"GET /x HTTP/1.1\r\nHost: h\r\nX: a\x00",
    b"GET  /x HTTP/1.1\r\nHost: h",
    b"GET /x HTTP/1.1\r\nHost: h\r\nAuthorization: token a\r\nAuthorization: token b",
    b"GET /x HTTP/1.1\r\nHost: h" + b"\r\nX: y" * 101,
]


@pytest.mark.parametrize("raw", NOT_PLAIN)
def test_requests_beyond_the_plain_subset_are_left_to_aiohttp(raw):
    assert parse_plain_request(raw) is None


def test_plain_request_fields():
    head = parse_plain_request(b"POST /user/a/x?y=1 HTTP/1.1\r\nHost: gw:8000\r\nAuthorization: token abc\r\n"
                               b"Content-Length: 3\r\nConnection: keep-alive, close\r\nX-Odd: \xe9 \t")
    assert (head.method, head.target, head.host, head.content_length, head.keep_alive, head.authorization) == (
        "POST", "/user/a/x?y=1", "gw:8000", 3, False, "token abc")
    assert head.headers[-1] == (b"X-Odd", b"\xe9")
    assert parse_plain_request(b"GET / HTTP/1.1\r\nHost: h").content_length is None
