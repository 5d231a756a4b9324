"""Unit tests for gateway.scopes: the 6.1.1 scope table, expansion, filters, decisions."""

import itertools
import warnings

import pytest

from gateway.vocab.scopes import (
    GROUP_FIELDS,
    SCOPE_DEFINITIONS,
    SCOPE_MESSAGE_NOT_FOUND,
    SERVICE_FIELDS,
    USER_FIELDS,
    ListFilter,
    RoleSpec,
    ScopeNotFound,
    Scopes,
    ScopesNotHeld,
    access_scope,
    check_token_request,
    default_roles,
    define_custom_scopes,
    excess_scopes,
    expand_scopes,
    identify_scopes,
    intersect_scopes,
    missing_scope_message,
    reduce_scopes,
    resolve_token_scopes,
    validate_role_name,
    validate_scopes,
)

GROUPS = {"alice": frozenset({"g1"}), "bob": frozenset({"g2"}), "carol": frozenset({"g1", "g2"})}


def groups_of(user: str) -> frozenset[str]:
    return GROUPS.get(user, frozenset())


def alice(*raw: str, server_name: str | None = None) -> frozenset[str]:
    return expand_scopes(raw, owner_kind="user", owner_name="alice", server_name=server_name)


def f(*scopes: str) -> frozenset[str]:
    return frozenset(scopes)


SELF_ALICE = f(*(f"{s}!user=alice" for s in (
    "access:servers", "delete:servers", "read:servers", "read:shares", "read:tokens",
    "read:users", "read:users:activity", "read:users:groups", "read:users:name",
    "read:users:shares", "servers", "start:servers", "tokens", "users:activity", "users:shares",
)))


# --------------------------------------------------------------------------- the table

ALL_SCOPES_6_1_1 = {
    "(no_scope)", "self", "inherit", "admin-ui", "admin:users", "admin:auth_state", "users",
    "delete:users", "list:users", "read:users", "read:users:name", "read:users:groups",
    "read:users:activity", "read:roles", "read:roles:users", "read:roles:services",
    "read:roles:groups", "users:activity", "admin:servers", "admin:server_state", "servers",
    "read:servers", "start:servers", "delete:servers", "tokens", "read:tokens", "admin:groups",
    "groups", "list:groups", "read:groups", "read:groups:name", "delete:groups",
    "admin:services", "list:services", "read:services", "read:services:name", "read:hub",
    "access:servers", "access:services", "users:shares", "read:users:shares", "groups:shares",
    "read:groups:shares", "read:shares", "shares", "proxy", "shutdown", "read:metrics",
}


def test_table_has_exactly_the_6_1_1_scopes():
    assert set(SCOPE_DEFINITIONS) == ALL_SCOPES_6_1_1


def test_table_is_read_only_and_subscopes_defined():
    with pytest.raises(TypeError):
        SCOPE_DEFINITIONS["x"] = SCOPE_DEFINITIONS["read:hub"]  # type: ignore[index]
    for name, d in SCOPE_DEFINITIONS.items():
        assert d.description, name
        assert isinstance(d.subscopes, tuple)
        assert set(d.subscopes) <= ALL_SCOPES_6_1_1, name


@pytest.mark.parametrize("scope, subscopes", [
    ("admin:users", ("admin:auth_state", "users", "read:roles:users", "delete:users")),
    ("users", ("read:users", "list:users", "users:activity")),
    ("list:users", ("read:users:name",)),
    ("read:users", ("read:users:name", "read:users:groups", "read:users:activity")),
    ("read:roles", ("read:roles:users", "read:roles:services", "read:roles:groups")),
    ("users:activity", ("read:users:activity",)),
    ("admin:servers", ("admin:server_state", "servers")),
    ("servers", ("read:servers", "start:servers", "delete:servers")),
    ("read:servers", ("read:users:name",)),
    ("tokens", ("read:tokens",)),
    ("admin:groups", ("groups", "read:roles:groups", "delete:groups")),
    ("groups", ("read:groups", "list:groups")),
    ("list:groups", ("read:groups:name",)),
    ("read:groups", ("read:groups:name",)),
    ("admin:services", ("list:services", "read:services", "read:roles:services")),
    ("list:services", ("read:services:name",)),
    ("read:services", ("read:services:name",)),
    ("users:shares", ("read:users:shares",)),
    ("groups:shares", ("read:groups:shares",)),
    ("shares", ("access:servers", "read:shares", "users:shares", "groups:shares")),
    ("access:servers", ()), ("access:services", ()), ("proxy", ()), ("shutdown", ()),
    ("read:metrics", ()), ("admin-ui", ()), ("read:hub", ()), ("start:servers", ()),
])
def test_direct_subscopes(scope, subscopes):
    assert SCOPE_DEFINITIONS[scope].subscopes == subscopes


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("raw", [
    [], ["self"], ["inherit"], ["read:users!user=alice"], ["servers!server=alice/"],
    ["servers!server=alice/nb"], ["admin:users!group=g1"], ["access:services!service=svc"],
    ["users:activity!user"], ["access:servers!server"], ["read:services!service"],
    ["(no_scope)"], ["read:metrics", "shares", "proxy", "shutdown", "admin-ui"],
])
def test_validate_accepts(raw):
    validate_scopes(raw)


@pytest.mark.parametrize("raw, who_for, message", [
    (["nosuch"], "token", "Scope 'nosuch' for token does not exist"),
    (["read:hub", "nosuch!user=x"], "token", "Scope 'nosuch!user=x' for token does not exist"),
    (["all"], "token", "Draft scope 'all' is now called 'inherit'"),
    (["all!user=alice"], "token", "Draft scope 'all' is now called 'inherit'"),
    (["users"], "role r1", None),
    (["nosuch"], "role r1", "Scope 'nosuch' for role r1 does not exist"),
    (["nosuch"], "share", "Scope 'nosuch' for share does not exist"),
    (["read:users!foo=x"], "token",
     "Scope filter foo=x '!foo=x' in scope 'read:users!foo=x' for token does not exist"),
    (["read:users!group"], "token",
     "Scope filter group '!group' in scope 'read:users!group' for token does not exist"),
    (["read:users!user="], "token",
     "Scope filter user= '!user=' in scope 'read:users!user=' for token does not exist"),
    (["read:users!users=alice"], "token",
     "Scope filter users=alice '!users=alice' in scope 'read:users!users=alice' for token"
     " does not exist"),
    (["Read:users"], "token", "Scope 'Read:users' for token does not exist"),
    ([" read:users"], "token", "Scope ' read:users' for token does not exist"),
])
def test_validate_errors(raw, who_for, message):
    if message is None:
        validate_scopes(raw, who_for=who_for)
        return
    with pytest.raises(ScopeNotFound) as info:
        validate_scopes(raw, who_for=who_for)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_scope_not_found_api_message_is_quoted_like_jupyterhub():
    with pytest.raises(ScopeNotFound) as info:
        validate_scopes(["nosuch"])
    assert info.value.api_message == "\"Scope 'nosuch' for token does not exist\""


@pytest.mark.parametrize("name, ok", [
    ("user", True), ("admin", True), ("abc", True), ("a-b_c~d.e9", True), ("r2d2", True),
    ("ab", False), ("a", False), ("", False), ("Admin", False), ("1abc", False),
    ("abc-", False), ("abc.", False), ("ab c", False), ("ab/c", False), ("abc\n", False),
    ("a" + "b" * 253 + "c", True), ("a" + "b" * 254 + "c", False),
])
def test_role_names(name, ok):
    assert validate_role_name(name) is ok


# --------------------------------------------------------------------------- expansion

def test_self_for_alice_is_exactly_the_15_scopes():
    assert alice("self") == SELF_ALICE
    assert len(SELF_ALICE) == 15


@pytest.mark.parametrize("raw, owner_kind, owner_name, server_name, expected", [
    (["self"], "service", "svc", None, f()),
    (["self"], None, None, None, f()),
    (["self"], "group", "g1", None, f()),
    (["read:hub"], "user", "alice", None, f("read:hub")),
    (["servers"], None, None, None,
     f("servers", "read:servers", "start:servers", "delete:servers", "read:users:name")),
    (["admin:users"], None, None, None,
     f("admin:users", "admin:auth_state", "users", "read:roles:users", "delete:users",
       "read:users", "list:users", "users:activity", "read:users:name", "read:users:groups",
       "read:users:activity")),
    (["users!group=g1"], None, None, None,
     f("users!group=g1", "read:users!group=g1", "list:users!group=g1",
       "users:activity!group=g1", "read:users:name!group=g1", "read:users:groups!group=g1",
       "read:users:activity!group=g1")),
    # a server filter does not carry the user-level read subscopes
    (["read:servers!server=bob/nb"], None, None, None, f("read:servers!server=bob/nb")),
    (["servers!server=bob/"], None, None, None,
     f("servers!server=bob/", "read:servers!server=bob/", "start:servers!server=bob/",
       "delete:servers!server=bob/")),
    (["read:servers!user=bob"], None, None, None,
     f("read:servers!user=bob", "read:users:name!user=bob")),
    # bare filters bind to the owner
    (["users:activity!user"], "user", "alice", None,
     f("users:activity!user=alice", "read:users:activity!user=alice")),
    (["read:services!service"], "service", "svc", None,
     f("read:services!service=svc", "read:services:name!service=svc")),
    (["access:servers!server"], "user", "alice", "nb", f("access:servers!server=alice/nb")),
    (["access:servers!server"], "user", "alice", "", f("access:servers!server=alice/")),
    (["read:servers!server"], "user", "alice", "nb", f("read:servers!server=alice/nb")),
    # ... or are dropped when there is nothing to bind to
    (["access:servers!server"], "user", "alice", None, f()),
    (["access:servers!server"], "service", "svc", "nb", f()),
    (["users:activity!user"], "service", "svc", None, f()),
    (["read:services!service"], "user", "alice", None, f()),
    (["users:activity!user"], None, None, None, f()),
    (["users:activity!user", "read:hub"], "group", "g1", None, f("read:hub")),
    # inherit is the caller's business
    (["inherit"], "user", "alice", None, f("inherit")),
    ([], "user", "alice", None, f()),
    # unfiltered wins over filtered
    (["read:users", "read:users!user=bob"], None, None, None,
     f("read:users", "read:users:name", "read:users:groups", "read:users:activity")),
    (["self", "read:users:name"], "user", "alice", None,
     (SELF_ALICE - {"read:users:name!user=alice"}) | {"read:users:name"}),
])
def test_expand(raw, owner_kind, owner_name, server_name, expected):
    got = expand_scopes(raw, owner_kind=owner_kind, owner_name=owner_name,
                        server_name=server_name)
    assert got == expected
    assert isinstance(got, frozenset)


def test_expand_accepts_any_iterable_and_rejects_unknown():
    assert expand_scopes(iter(["read:hub"])) == f("read:hub")
    assert expand_scopes({"read:hub"}) == f("read:hub")
    with pytest.raises(ScopeNotFound, match="Scope 'nosuch' for token does not exist"):
        expand_scopes(["nosuch"])


# --------------------------------------------------------------------------- default roles

ADMIN_JUPYTERHUB = (
    "admin-ui", "admin:users", "admin:servers", "admin:services", "tokens", "admin:groups",
    "list:services", "read:services", "read:hub", "proxy", "shutdown", "access:services",
    "access:servers", "read:roles", "read:metrics", "shares",
)


@pytest.mark.parametrize("admin_access", [False, True])
def test_default_roles_shape(admin_access):
    roles = default_roles(admin_access)
    assert list(roles) == ["user", "admin", "server", "token"]
    assert all(isinstance(r, RoleSpec) and r.name == n for n, r in roles.items())
    assert roles["user"].scopes == ("self",)
    assert roles["server"].scopes == ("users:activity!user", "access:servers!server")
    assert roles["token"].scopes == ("inherit",)
    for r in roles.values():
        validate_scopes(r.scopes, who_for=f"role {r.name}")
        assert validate_role_name(r.name)
    with pytest.raises(AttributeError):
        roles["admin"].scopes = ()  # type: ignore[misc]


def test_admin_role_with_admin_access_is_jupyterhubs():
    assert set(default_roles(True)["admin"].scopes) == set(ADMIN_JUPYTERHUB)
    expanded = expand_scopes(default_roles(True)["admin"].scopes, owner_kind="user",
                             owner_name="root")
    assert "access:servers" in expanded and "shares" in expanded


def test_admin_role_without_admin_access_cannot_reach_servers():
    role = default_roles(False)["admin"]
    assert "access:servers" not in role.scopes and "shares" not in role.scopes
    expanded = expand_scopes(role.scopes, owner_kind="user", owner_name="root")
    assert not any(s.partition("!")[0] == "access:servers" for s in expanded)
    # everything else the JupyterHub admin has is still there
    full = expand_scopes(ADMIN_JUPYTERHUB, owner_kind="user", owner_name="root")
    assert full - expanded == f("access:servers", "shares")
    scopes = Scopes.from_expanded(expanded)
    assert scopes.check(["access:servers"], server="alice/", user="alice") == "missing"
    assert scopes.check(["admin:users"]) == "ok"
    assert scopes.check(["delete:servers"], server="alice/nb", user="alice") == "ok"
    assert scopes.check(["read:shares"], server="alice/nb", user="alice") == "ok"


def test_server_role_token_for_a_named_server():
    expanded = expand_scopes(default_roles(False)["server"].scopes, owner_kind="user",
                             owner_name="alice", server_name="nb")
    assert expanded == f("users:activity!user=alice", "read:users:activity!user=alice",
                         "access:servers!server=alice/nb")
    s = Scopes.from_expanded(expanded)
    assert s.check(["access:servers"], server="alice/nb", user="alice") == "ok"
    assert s.check(["access:servers"], server="alice/", user="alice") == "other"
    assert s.check(["users:activity"], user="alice") == "ok"
    assert s.check(["users:activity"], user="bob") == "other"
    assert s.check(["read:users"], user="alice") == "missing"


def test_user_role_expands_to_self():
    assert alice(*default_roles(False)["user"].scopes) == SELF_ALICE


# --------------------------------------------------------------------------- reduce / intersect

@pytest.mark.parametrize("expanded, reduced", [
    (f(), f()),
    (f("a", "a!user=x"), f("a")),
    (f("a!user=x", "a!server=x/"), f("a!user=x", "a!server=x/")),
    (f("a!user=x", "b", "b!group=g", "b!server=u/s"), f("a!user=x", "b")),
    (f("inherit", "read:hub"), f("inherit", "read:hub")),
])
def test_reduce(expanded, reduced):
    assert reduce_scopes(expanded) == reduced


@pytest.mark.parametrize("a, b, expected", [
    (f(), f("read:hub"), f()),
    (f("read:hub"), f("read:hub"), f("read:hub")),
    (f("read:hub"), f("proxy"), f()),
    # unfiltered on one side keeps the other side's filters
    (f("read:users"), f("read:users!user=alice"), f("read:users!user=alice")),
    (f("read:users!group=g1"), f("read:users"), f("read:users!group=g1")),
    # same kind: plain set intersection, names compared whole
    (f("x!user=alice", "x!user=bob"), f("x!user=bob"), f("x!user=bob")),
    (f("x!user=alice"), f("x!user=alicex"), f()),
    (f("x!server=alice/"), f("x!server=alice/nb"), f()),
    (f("x!service=s"), f("x!service=s", "x!service=t"), f("x!service=s")),
    # user covers its servers, in both directions
    (f("x!server=alice/nb"), f("x!user=alice"), f("x!server=alice/nb")),
    (f("x!user=alice"), f("x!server=alice/nb"), f("x!server=alice/nb")),
    (f("x!server=alicex/nb"), f("x!user=alice"), f()),
    (f("x!server=bob/nb"), f("x!user=alice"), f()),
    # group covers its members and their servers (groups_of)
    (f("x!user=alice"), f("x!group=g1"), f("x!user=alice")),
    (f("x!group=g1"), f("x!user=alice", "x!user=bob"), f("x!user=alice")),
    (f("x!server=carol/nb"), f("x!group=g2"), f("x!server=carol/nb")),
    (f("x!server=alice/nb"), f("x!group=g2"), f()),
    (f("x!group=g1"), f("x!group=g2"), f()),
    (f("x!group=g1", "x!group=g2"), f("x!group=g2"), f("x!group=g2")),
    (f("x!user=nobody"), f("x!group=g1"), f()),
    # a user filter never covers a group, nor a service
    (f("x!group=g1"), f("x!user=alice"), f("x!user=alice")),
    (f("x!service=s"), f("x!user=alice"), f()),
])
def test_intersect(a, b, expected):
    assert intersect_scopes(a, b, groups_of=groups_of) == expected
    assert intersect_scopes(b, a, groups_of=groups_of) == expected


def test_intersect_asks_each_user_group_once():
    calls = []

    def counting(user):
        calls.append(user)
        return groups_of(user)

    a = f("x!user=alice", "y!user=alice", "x!server=alice/nb", "y!server=alice/")
    b = f("x!group=g1", "y!group=g1")
    intersect_scopes(a, b, groups_of=counting)
    assert calls == ["alice"]


# --------------------------------------------------------------------------- tokens

def test_demoted_owner_shrinks_an_existing_token():
    admin = expand_scopes(default_roles(True)["admin"].scopes + ("self",),
                          owner_kind="user", owner_name="alice")
    token_raw = ["admin:users", "read:hub", "servers!user=bob"]
    before = resolve_token_scopes(token_raw, owner_scopes=admin, owner_kind="user",
                                  owner_name="alice", groups_of=groups_of)
    assert {"admin:users", "read:hub", "servers!user=bob"} <= before
    demoted = alice("self")
    after = resolve_token_scopes(token_raw, owner_scopes=demoted, owner_kind="user",
                                 owner_name="alice", groups_of=groups_of)
    # what survives is what admin:users implies that alice still holds on herself
    assert after == f(*(f"{s}!user=alice" for s in (
        "read:users", "read:users:name", "read:users:groups", "read:users:activity",
        "users:activity")))
    assert not Scopes.from_expanded(after).has("servers", user="bob")
    assert Scopes.from_expanded(after).check(["admin:users"]) == "missing"


@pytest.mark.parametrize("token_raw, expected", [
    (["inherit"], SELF_ALICE),
    (["inherit", "read:hub"], SELF_ALICE),
    (["read:users"], f("read:users!user=alice", "read:users:name!user=alice",
                       "read:users:groups!user=alice", "read:users:activity!user=alice")),
    (["read:hub"], f("read:users:name!user=alice", "read:users:groups!user=alice")),
    (["access:servers!server=alice/nb"],
     f("access:servers!server=alice/nb", "read:users:name!user=alice",
       "read:users:groups!user=alice")),
    (["access:servers!server=bob/"],
     f("read:users:name!user=alice", "read:users:groups!user=alice")),
])
def test_resolve_token_scopes_for_plain_user(token_raw, expected):
    got = resolve_token_scopes(token_raw, owner_scopes=SELF_ALICE, owner_kind="user",
                               owner_name="alice", groups_of=groups_of)
    assert got == expected


def test_resolve_token_scopes_oauth_extra_and_service_owner():
    got = resolve_token_scopes(
        [], owner_scopes=SELF_ALICE, owner_kind="user", owner_name="alice",
        groups_of=groups_of, extra=f(access_scope("alice", "nb")))
    assert "access:servers!server=alice/nb" in got
    svc_scopes = expand_scopes(["list:users", "read:services!service"],
                               owner_kind="service", owner_name="svc")
    got = resolve_token_scopes(["inherit"], owner_scopes=svc_scopes, owner_kind="service",
                               owner_name="svc", groups_of=groups_of)
    assert got == svc_scopes
    got = resolve_token_scopes(["list:users"], owner_scopes=svc_scopes, owner_kind="service",
                               owner_name="svc", groups_of=groups_of)
    assert got == f("list:users", "read:users:name", "read:services:name!service=svc")


@pytest.mark.parametrize("raw, excess", [
    (["inherit"], None),
    ([], None),
    (["read:users!user=alice"], None),
    (["servers!server=alice/nb"], None),
    (["self"], None),
    (["read:users"], "Not assigning requested scopes read:users,read:users:activity,"
                     "read:users:groups,read:users:name not held by User alice"),
    (["read:hub", "tokens!user=alice"], "Not assigning requested scopes read:hub"
                                        " not held by User alice"),
])
def test_check_token_request(raw, excess):
    kw = dict(owner_scopes=SELF_ALICE, owner_kind="user", owner_name="alice",
              groups_of=groups_of)
    if excess is None:
        check_token_request(raw, **kw)
        return
    with pytest.raises(ScopesNotHeld) as info:
        check_token_request(raw, **kw)
    assert str(info.value) == excess
    assert isinstance(info.value, ValueError)


def test_check_token_request_unknown_scope_and_group_coverage():
    with pytest.raises(ScopeNotFound):
        check_token_request(["nosuch"], owner_scopes=SELF_ALICE, owner_kind="user",
                            owner_name="alice", groups_of=groups_of)
    held = f("read:users!group=g1", "read:users:name!group=g1")
    assert excess_scopes(f("read:users!user=carol"), held, groups_of=groups_of) == f()
    assert excess_scopes(f("read:users!user=bob"), held, groups_of=groups_of) == \
        f("read:users!user=bob")


# --------------------------------------------------------------------------- identify / access

@pytest.mark.parametrize("kind, name, expected", [
    ("user", "alice", f("read:users:name!user=alice", "read:users:groups!user=alice")),
    ("service", "svc", f("read:services:name!service=svc")),
])
def test_identify(kind, name, expected):
    assert identify_scopes(kind, name) == expected


def test_identify_rejects_other_kinds():
    with pytest.raises(ValueError):
        identify_scopes("group", "g1")


@pytest.mark.parametrize("args, kwargs, expected", [
    (("alice",), {}, "access:servers!server=alice/"),
    (("alice", ""), {}, "access:servers!server=alice/"),
    (("alice", "nb"), {}, "access:servers!server=alice/nb"),
    ((None,), {"service": "svc"}, "access:services!service=svc"),
])
def test_access_scope(args, kwargs, expected):
    assert access_scope(*args, **kwargs) == expected


# --------------------------------------------------------------------------- decisions

TOKENS = {
    "self": SELF_ALICE,
    "admin": expand_scopes(default_roles(True)["admin"].scopes),
    "group": expand_scopes(["servers!group=g1", "read:users!group=g1", "access:servers!group=g1"]),
    "server": f("access:servers!server=alice/"),
    "named": f("access:servers!server=alice/nb"),
    "svc": f("access:services!service=svc", "read:services!service=svc",
             "read:services:name!service=svc"),
    "grp": f("read:groups!group=g1", "read:groups:name!group=g1"),
    "hub": f("read:hub"),
    "filtered_hub": f("read:hub!user=alice"),
    "none": f(),
}

A = dict(user="alice", user_groups=frozenset({"g1"}))


@pytest.mark.parametrize("token, required, resource, decision", [
    # own resources
    ("self", ["read:users"], dict(user="alice"), "ok"),
    ("self", ["read:users"], dict(user="bob"), "other"),
    ("self", ["read:users"], dict(user="alicex"), "other"),
    ("self", ["read:users"], dict(user="alic"), "other"),
    ("self", ["access:servers"], dict(server="alice/", user="alice"), "ok"),
    ("self", ["access:servers"], dict(server="alice/nb", user="alice"), "ok"),
    ("self", ["access:servers"], dict(server="alice/nb"), "ok"),
    ("self", ["access:servers"], dict(server="alicex/", user="alicex"), "other"),
    ("self", ["access:servers"], dict(server="bob/", user="bob"), "other"),
    ("self", ["list:users"], {}, "missing"),
    ("self", ["read:hub"], {}, "missing"),
    ("self", ["admin:users"], dict(user="alice"), "missing"),
    ("self", ["delete:users"], dict(user="alice"), "missing"),
    ("self", ["read:users"], {}, "other"),
    ("self", ["read:users"], dict(post_filter=True), "ok"),
    ("self", ["read:groups"], dict(group="g1"), "missing"),
    # any-of: the first held one wins, in any order
    ("self", ["admin:users", "read:users"], dict(user="alice"), "ok"),
    ("self", ["read:users", "read:users:name", "read:servers"], dict(user="bob"), "other"),
    ("self", [], dict(user="alice"), "missing"),
    # unfiltered covers everything, with or without a resource
    ("admin", ["admin:users"], {}, "ok"),
    ("admin", ["read:users"], dict(user="anyone"), "ok"),
    ("admin", ["access:servers"], dict(server="bob/nb", user="bob"), "ok"),
    ("admin", ["access:services"], dict(service="svc"), "ok"),
    ("admin", ["read:groups"], dict(group="g9"), "ok"),
    ("hub", ["read:hub"], {}, "ok"),
    ("filtered_hub", ["read:hub"], {}, "other"),
    ("none", ["read:hub"], {}, "missing"),
    ("none", ["read:users"], dict(user="alice"), "missing"),
    # server filters: exact server only
    ("server", ["access:servers"], dict(server="alice/", user="alice"), "ok"),
    ("server", ["access:servers"], dict(server="alice/nb", user="alice"), "other"),
    ("named", ["access:servers"], dict(server="alice/nb", user="alice"), "ok"),
    ("named", ["access:servers"], dict(server="alice/", user="alice"), "other"),
    ("named", ["access:servers"], dict(server="alice/nbx", user="alice"), "other"),
    ("named", ["access:servers"], dict(user="alice"), "other"),
    # group filters cover members and their servers
    ("group", ["access:servers"], dict(server="alice/nb", **A), "ok"),
    ("group", ["access:servers"], dict(server="bob/nb", user="bob",
                                       user_groups=frozenset({"g2"})), "other"),
    ("group", ["access:servers"], dict(server="bob/nb", user="bob"), "other"),
    ("group", ["read:users"], dict(**A), "ok"),
    ("group", ["read:users"], dict(user="carol", user_groups=frozenset({"g1", "g2"})), "ok"),
    ("group", ["read:users"], dict(user="dave"), "other"),
    ("group", ["read:groups"], dict(group="g1"), "missing"),
    # group resources: only group filters
    ("grp", ["read:groups"], dict(group="g1"), "ok"),
    ("grp", ["read:groups"], dict(group="g1x"), "other"),
    ("grp", ["read:groups:name"], dict(group="g2"), "other"),
    # services
    ("svc", ["access:services"], dict(service="svc"), "ok"),
    ("svc", ["access:services"], dict(service="svc2"), "other"),
    ("svc", ["read:services", "read:services:name"], dict(service="sv"), "other"),
    ("svc", ["access:servers"], dict(server="alice/", user="alice"), "missing"),
])
def test_check(token, required, resource, decision):
    scopes = Scopes.from_expanded(TOKENS[token])
    assert scopes.check(required, **resource) == decision
    only_one = len(required) == 1 and "post_filter" not in resource
    if only_one:
        assert scopes.has(required[0], **resource) is (decision == "ok")


@pytest.mark.parametrize("resource", [
    dict(server="alice"),  # no slash
    dict(server="alice/", user="bob"),  # owner mismatch
    dict(user="alice", group="g1"),
    dict(user="alice", service="svc"),
    dict(group="g1", service="svc"),
])
def test_check_rejects_confused_resources(resource):
    with pytest.raises(ValueError):
        Scopes.from_expanded(SELF_ALICE).check(["read:users"], **resource)


def test_messages():
    assert SCOPE_MESSAGE_NOT_FOUND == "No access to resources or resources not found"
    assert missing_scope_message(["read:hub"]) == \
        "Action is not authorized with current scopes; requires any of [read:hub]"
    assert missing_scope_message(["read:users", "read:users:name"]) == (
        "Action is not authorized with current scopes;"
        " requires any of [read:users, read:users:name]")


def test_scopes_value_semantics():
    a = Scopes.from_expanded(["read:hub", "x!user=a"])
    b = Scopes.from_expanded(iter(["x!user=a", "read:hub"]))
    assert a == b and hash(a) == hash(b)
    assert a.expanded == f("read:hub", "x!user=a")
    assert Scopes.EMPTY.check(["read:hub"]) == "missing"
    assert "read:hub" in repr(a)
    with pytest.raises(ValueError):
        Scopes.from_expanded(["read:users!user"])  # unexpanded bare filter


# --------------------------------------------------------------------------- list filters

@pytest.mark.parametrize("expanded, scope, expected", [
    (f(), "list:users", None),
    (f("list:users"), "list:users", ListFilter(all=True)),
    (f("list:users", "list:users!user=a"), "list:users", ListFilter(all=True)),
    (f("list:users!user=a", "list:users!group=g1"), "list:users",
     ListFilter(all=False, users=f("a"), groups=f("g1"))),
    (f("list:users!server=a/"), "list:users", ListFilter(all=False, servers=f("a/"))),
    (f("list:groups!group=g1"), "list:groups", ListFilter(all=False, groups=f("g1"))),
    (f("list:services!service=s"), "list:services", ListFilter(all=False, services=f("s"))),
    (f("list:groups!group=g1"), "list:users", None),
])
def test_list_filter(expanded, scope, expected):
    assert Scopes.from_expanded(expanded).list_filter(scope) == expected


def test_list_filter_allows():
    lf = ListFilter(all=False, users=f("alice"), groups=f("g2"), services=f("s"),
                    servers=f("dave/nb"))
    assert lf.kinds == f("user", "group", "service", "server")
    assert lf.allows_user("alice")
    assert not lf.allows_user("alicex")
    assert not lf.allows_user("bob")
    assert lf.allows_user("bob", frozenset({"g2"}))
    assert lf.allows_group("g2") and not lf.allows_group("g1") and not lf.allows_group("g")
    assert lf.allows_service("s") and not lf.allows_service("s2")
    assert lf.allows_server("dave/nb") and not lf.allows_server("dave/")
    assert lf.allows_server("alice/") and lf.allows_server("bob/x", frozenset({"g2"}))
    assert not lf.allows_server("alicex/")
    everything = ListFilter(all=True)
    assert everything.kinds == f()
    assert everything.allows_user("x") and everything.allows_group("x")
    assert everything.allows_service("x") and everything.allows_server("x/")
    # GET /users refuses filter kinds other than user and group
    assert ListFilter(all=False, users=f("a"), groups=f("g")).kinds <= {"user", "group"}
    assert not ListFilter(all=False, servers=f("a/")).kinds <= {"user", "group"}


# --------------------------------------------------------------------------- field filtering

@pytest.mark.parametrize("expanded, name, groups, fields", [
    (f("read:users:name"), "alice", f(), f("kind", "name", "admin", "user_info")),
    (f("read:users:name!user=alice"), "alice", f(), f("kind", "name", "admin", "user_info")),
    (f("read:users:name!user=alice"), "alicex", f(), f()),
    (f("read:users:groups!group=g1"), "bob", f("g1"), f("kind", "name", "groups")),
    (f("read:users:activity"), "bob", f(), f("kind", "name", "last_activity")),
    (f("read:roles:users"), "bob", f(), f("kind", "name", "roles", "admin")),
    (f("admin:auth_state"), "bob", f(), f("kind", "name", "auth_state")),
    (f("read:servers!user=bob"), "bob", f(), f("kind", "name", "servers")),
    # a server filter never exposes the user model
    (f("read:servers!server=bob/nb"), "bob", f(), f()),
    (SELF_ALICE, "alice", f(), USER_FIELDS["read:users"] | {"servers"}),
    (SELF_ALICE, "bob", f(), f()),
    (expand_scopes(default_roles(False)["admin"].scopes), "bob", f(),
     frozenset().union(*USER_FIELDS.values())),
])
def test_fields_for_user(expanded, name, groups, fields):
    assert Scopes.from_expanded(expanded).fields_for_user(name, groups) == fields


@pytest.mark.parametrize("expanded, name, fields", [
    (f("read:groups:name"), "g1", f("kind", "name")),
    (f("read:groups!group=g1"), "g1", f("kind", "name", "properties", "users")),
    (f("read:groups!group=g1"), "g10", f()),
    (f("read:roles:groups", "read:groups:name"), "g1", f("kind", "name", "roles")),
    (expand_scopes(["admin:groups"]), "g1", frozenset().union(*GROUP_FIELDS.values())),
    (SELF_ALICE, "g1", f()),
])
def test_fields_for_group(expanded, name, fields):
    assert Scopes.from_expanded(expanded).fields_for_group(name) == fields


@pytest.mark.parametrize("expanded, name, fields", [
    (f("read:services:name"), "svc", f("kind", "name", "admin")),
    (f("read:roles:services!service=svc"), "svc", f("kind", "name", "roles", "admin")),
    (expand_scopes(["read:services"]), "svc", SERVICE_FIELDS["read:services"]),
    (expand_scopes(["read:services!service"], owner_kind="service", owner_name="svc"), "svcx",
     f()),
    (expand_scopes(["admin:services"]), "svc", frozenset().union(*SERVICE_FIELDS.values())),
])
def test_fields_for_service(expanded, name, fields):
    assert Scopes.from_expanded(expanded).fields_for_service(name) == fields


# --------------------------------------------------------------------------- custom scopes

def test_custom_scopes_defined_validated_and_expanded():
    table = define_custom_scopes({
        "custom:nb:read": {"description": "read", "subscopes": ["custom:nb:read:contents"]},
        "custom:nb:read:contents": {"description": "contents"},
    })
    assert "custom:nb:read" in table and "read:hub" in table
    assert "custom:nb:read" not in SCOPE_DEFINITIONS
    validate_scopes(["custom:nb:read!user=alice"], definitions=table)
    with pytest.raises(ScopeNotFound):
        validate_scopes(["custom:nb:read"])
    got = expand_scopes(["custom:nb:read!user"], owner_kind="user", owner_name="alice",
                        definitions=table)
    assert got == f("custom:nb:read!user=alice", "custom:nb:read:contents!user=alice")


@pytest.mark.parametrize("custom, message", [
    ({"nb:read": {"description": "x"}}, "Invalid scope name: 'nb:read'"),
    ({"custom:Nb": {"description": "x"}}, "Invalid scope name"),
    ({"custom:nb-": {"description": "x"}}, "Invalid scope name"),
    ({"custom:nbx": {}}, "missing key 'description'"),
    ({"custom:nbx": {"description": "x", "subscopes": "custom:a"}}, "must be a list"),
    ({"custom:nbx": {"description": "x", "subscopes": ["read:hub"]}},
     "non-custom subscope read:hub"),
    ({"custom:nbx": {"description": "x", "subscopes": ["custom:zz"]}},
     "subscope custom:zz in custom:nbx="),
])
def test_custom_scope_errors(custom, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("*", r"\*")):
        define_custom_scopes(custom)


# --------------------------------------------------------------------------- JupyterHub as oracle
# JupyterHub 6.1.1 (a test dependency) answers the same questions; compare over generated
# inputs without group filters (its functions need a database to resolve groups).

ORACLE_FILTERS = ["", "!user=alice", "!user=alicex", "!server=alice/", "!server=alice/nb",
                  "!server=bob/", "!service=svc"]
ORACLE_SETS = [
    frozenset(combo)
    for n in range(3)
    for combo in itertools.combinations(
        [b + flt for b in ("read:users", "access:servers") for flt in ORACLE_FILTERS], n)
]


@pytest.fixture(scope="module")
def jh():
    jh_scopes = pytest.importorskip("jupyterhub.scopes")
    return jh_scopes, pytest.importorskip("jupyterhub.orm")


def test_expand_matches_jupyterhub(jh):
    jh_scopes, orm = jh
    owners = [(orm.User(name="alice"), "user"), (orm.Service(name="svc"), "service"),
              (None, None)]
    filters = ["", "!user", "!service", "!server", "!user=bob", "!server=bob/nb",
               "!group=g", "!service=s"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in SCOPE_DEFINITIONS:
            for flt in filters:
                for owner, kind in owners:
                    theirs = jh_scopes.expand_scopes([name + flt], owner=owner)
                    ours = expand_scopes([name + flt], owner_kind=kind,
                                         owner_name=owner.name if owner else None)
                    assert ours == theirs, (name + flt, kind)


def test_has_scope_matches_jupyterhub(jh):
    jh_scopes, _ = jh
    resources = [("user", "alice"), ("user", "alicex"), ("server", "alice/"),
                 ("server", "alice/nb"), ("server", "bob/"), ("service", "svc"), (None, None)]
    for held in ORACLE_SETS:
        scopes = Scopes.from_expanded(held)
        for base in ("read:users", "access:servers"):
            for kind, name in resources:
                wanted = base if kind is None else f"{base}!{kind}={name}"
                kwargs = {} if kind is None else {kind: name}
                assert scopes.has(base, **kwargs) is bool(jh_scopes.has_scope(wanted, held)), \
                    (held, wanted)


def test_intersection_matches_jupyterhub(jh):
    jh_scopes, _ = jh
    for a in ORACLE_SETS:
        for b in ORACLE_SETS:
            theirs = frozenset(jh_scopes._intersect_expanded_scopes(a, b))
            assert intersect_scopes(a, b, groups_of=groups_of) == theirs, (a, b)


def test_table_and_roles_match_jupyterhub(jh):
    jh_scopes, _ = jh
    jh_roles = pytest.importorskip("jupyterhub.roles")
    for name, d in SCOPE_DEFINITIONS.items():
        theirs = jh_scopes.scope_definitions[name]
        assert d.description == theirs["description"], name
        assert d.subscopes == tuple(theirs.get("subscopes", ())), name
    theirs = {r["name"]: r for r in jh_roles.get_default_roles()}
    for name, role in default_roles(admin_access=True).items():
        assert role.scopes == tuple(theirs[name]["scopes"])
        assert role.description == theirs[name]["description"]
