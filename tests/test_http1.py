"""Strict parsing of backend response heads (pure function)."""

import pytest

from gateway.http1 import MalformedHead, parse_response_head

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
