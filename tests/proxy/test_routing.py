"""Canonical path handling and the route table (pure functions, no server)."""

import pytest

from gateway.wire.routing import (
    BadPath,
    Route,
    RouteTable,
    canonical_target,
    origin_form,
    service_prefix,
    user_prefix,
)

REFUSED = [
    "/user/a/../b/",
    "/user/a/%2e%2e/b/",
    "/user/a/%2E%2E/b/",
    "/user/a/.%2e/b/",
    "/user/a/%2e./b/",
    "/user/a%2f..%2fb/",
    "/user/a%2F..%2Fb/",
    "/user/a/..%2fb/",
    "/user/a/%2e%2e%2fb/",
    "//user/b/",
    "/user//b/",
    "/user/a/..\\b/",
    "/user/a\\..\\b/",
    "/user/a/..%5cb/",
    "/user/a/..;/b/",
    "/hub/../user/b/",
    "/hub/%2e%2e/user/b/",
    "/user/a/../../user/b/",
    "/./user/b/",
    "/user/./b/",
    "/user/a/nb1/../../b/",
    "/user/a%00/../b/",
    "/user/b%2fapi%2fcontents%2ff",
    "/user/a%23/../b/",
    "/user/a/%ff/",
    "/user/a/x%0d%0aSet-Cookie:%20x",
    "/user/a#frag",
    "/user/a/.",
    "/user/a/..",
    "/services/s/../../user/b/",
]


@pytest.mark.parametrize("path", REFUSED)
def test_ambiguous_paths_are_refused(path):
    with pytest.raises(BadPath):
        canonical_target(path, "/")


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/user/alice/", ("user", "alice", "/")),
        ("/user/alice", ("user", "alice", "")),
        ("/user/alice/nb/lab?x=%2f", ("user", "alice", "/nb/lab")),
        ("/user/%61lice/x", ("user", "alice", "/x")),  # decoded exactly once
        ("/user/a/%252e%252e/b", ("user", "a", "/%2e%2e/b")),  # ... and only once
        ("/user/al%40ce/...", ("user", "al@ce", "/...")),
        ("/user/a/.hidden/", ("user", "a", "/.hidden/")),
        ("/user/a//x", ("user", "a", "//x")),  # inside the server: forwarded as is
        ("/services/grader/api", ("services", "grader", "/api")),
        ("/hub/api/users", None),
        ("/user", None),
        ("/users/alice/", None),
        ("http://evil.example/user/alice/x", ("user", "alice", "/x")),  # path only
    ],
)
def test_canonical_target(path, expected):
    assert canonical_target(path, "/") == expected


def test_base_url_is_matched_decoded():
    assert canonical_target("/a%40b/user/alice/x", "/a%40b/") == ("user", "alice", "/x")
    assert canonical_target("/a@b/user/alice/x", "/a%40b/") == ("user", "alice", "/x")
    assert canonical_target("/user/alice/x", "/a%40b/") is None
    assert canonical_target("/a%40bc/user/alice/x", "/a%40b/") is None


def test_origin_form():
    assert origin_form("/x?y") == "/x?y"
    assert origin_form("http://h:1/p?q") == "/p?q"
    assert origin_form("http://h") == "/"
    for bad in ("h:443", "*", "x"):
        with pytest.raises(BadPath):
            origin_form(bad)


def route(prefix, user=None, server="", service=None):
    kind = "service" if service else "user"
    return Route(prefix, "http://127.0.0.1:1", kind, user, server, service, "s")


def test_lookup_by_whole_segments():
    table = RouteTable()
    alice = route(user_prefix("/", "alice"), "alice")
    alice_nb = route(user_prefix("/", "alice", "nb"), "alice", "nb")
    grader = route(service_prefix("/", "grader"), service="grader")
    for r in (alice, alice_nb, grader):
        table.add(r)
    assert table.lookup("user", "alice", "/") is alice
    assert table.lookup("user", "alice", "") is alice
    assert table.lookup("user", "alice", "/nb/x") is alice_nb
    assert table.lookup("user", "alice", "/nb") is alice_nb
    assert table.lookup("user", "alice", "/nbx/") is alice  # not a named server
    assert table.lookup("user", "alicex", "/") is None  # never a prefix match
    assert table.lookup("user", "alic", "/") is None
    assert table.lookup("services", "grader", "/api") is grader
    assert table.lookup("user", "grader", "/") is None
    assert table.all() == sorted([alice, alice_nb, grader], key=lambda r: r.prefix)


def test_add_replace_remove():
    table = RouteTable()
    a1 = route("/user/a/", "a")
    a2 = Route("/user/a/", "http://127.0.0.1:2", "user", "a", "", None, "s2")
    table.add(a1)
    table.add(a2)
    assert table.get("/user/a/") is a2
    assert table.lookup("user", "a", "/") is a2
    assert len(table) == 1
    assert table.remove("/user/a/") is a2
    assert table.lookup("user", "a", "/") is None
    assert table.remove("/user/a/") is None


def test_prefixes_are_escaped_like_urls():
    assert user_prefix("/", "a@b") == "/user/a@b/"
    assert user_prefix("/base", "a b", "n/x") == "/base/user/a%20b/n%2Fx/"
    assert service_prefix("/x/", "s") == "/x/services/s/"


def test_route_repr_hides_secret():
    assert "s3cret" not in repr(Route("/user/a/", "http://127.0.0.1:1", "user", "a", "", None, "s3cret"))
