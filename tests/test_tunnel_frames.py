"""FrameBoundary: where the tunnel may put its 1001 close frame, fed in every possible chunking."""

from __future__ import annotations

import os

import pytest

from gateway.tunnel import FrameBoundary


def frame(opcode: int, payload: bytes, masked: bool = False) -> bytes:
    n = len(payload)
    second = 0x80 if masked else 0
    if n < 126:
        head = bytes((0x80 | opcode, second | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, second | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, second | 127)) + n.to_bytes(8, "big")
    return head + (b"\x01\x02\x03\x04" if masked else b"") + payload


STREAM = [frame(1, b"hi"), frame(2, os.urandom(300)), frame(2, os.urandom(70_000)), frame(9, b""),
          frame(1, b"x" * 125, masked=True), frame(1, b"y" * 126)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000, 65536, 10**6])
def test_boundaries_found_whatever_the_chunking(size):
    data = b"".join(STREAM)
    ends = set()
    pos = 0
    for f in STREAM:
        pos += len(f)
        ends.add(pos)
    frames = FrameBoundary()
    for start in range(0, len(data), size):
        chunk = data[start:start + size]
        frames.feed(chunk)
        end = start + len(chunk)
        assert frames.at_boundary == (end in ends), (size, end)
    assert frames.at_boundary and not frames.closed


def test_close_frame_noticed():
    frames = FrameBoundary()
    frames.feed(frame(1, b"a") + frame(8, b"\x03\xe8"))
    assert frames.closed and frames.at_boundary
