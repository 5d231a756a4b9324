"""JupyterHub 6.1.1 role-based access control as data and pure functions.

No I/O happens here: group memberships are passed in (``groups_of``, ``user_groups``), and
callers load roles, tokens and shares from the store.

Vocabulary
----------
raw scopes
    What roles, tokens and shares store: may hold metascopes (``self``, ``inherit``), scopes
    whose subscopes are implied (``servers`` implies ``read:servers``...) and bare filters bound
    to the holder (``users:activity!user``, ``access:servers!server``).
expanded scopes
    Every implied scope spelled out, bare filters bound to a name (``read:servers!user=alice``),
    ``self`` replaced, overlaps removed. ``inherit`` is kept as a marker: the caller replaces
    it with the owner's own expanded scopes (see :func:`resolve_token_scopes`).
filter
    The part after ``!``: ``user=<name>``, ``server=<user>/<server>`` (``alice/`` is alice's
    default server), ``group=<name>`` or ``service=<name>``. An unfiltered scope covers every
    resource; otherwise ``!group=g`` covers g's members and their servers, ``!user=u`` covers
    u and u's servers, ``!server=u/s`` covers that one server. Names are compared whole, so
    ``!user=alice`` never covers ``alicex`` and ``!server=alice/`` never covers ``alice/nb``.
parsed scopes
    :class:`Scopes`: the expanded set indexed by base scope, so one check is a few lookups.

The data (scope table, built-in roles, model keys per read scope) lives in
:mod:`gateway.vocab.scope_table`, the parsed sets (:class:`Scopes`, :class:`ListFilter`) in
:mod:`gateway.vocab.scope_sets`; both are re-exported here.

The gateway differs from JupyterHub in one place on purpose: the ``admin`` role holds
``access:servers`` (and ``shares``, which implies it) only when ``admin_access`` is on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

from gateway.vocab.scope_sets import ListFilter, Parsed, Scopes, parse_scopes, unparse_scopes
from gateway.vocab.scope_table import (
    GROUP_FIELDS,
    SCOPE_DEFINITIONS,
    SERVICE_FIELDS,
    USER_FIELDS,
    Definitions,
    RoleSpec,
    ScopeDefinition,
    default_roles,
    define_custom_scopes,
    validate_role_name,
)

__all__ = [
    "SCOPE_DEFINITIONS",
    "SCOPE_MESSAGE_NOT_FOUND",
    "ListFilter",
    "RoleSpec",
    "ScopeDefinition",
    "ScopeNotFound",
    "Scopes",
    "ScopesNotHeld",
    "USER_FIELDS",
    "GROUP_FIELDS",
    "SERVICE_FIELDS",
    "access_scope",
    "check_token_request",
    "default_roles",
    "define_custom_scopes",
    "excess_scopes",
    "expand_scopes",
    "identify_scopes",
    "intersect_scopes",
    "missing_scope_message",
    "reduce_scopes",
    "resolve_token_scopes",
    "validate_role_name",
    "validate_scopes",
]


SCOPE_MESSAGE_NOT_FOUND = "No access to resources or resources not found"

FILTER_KINDS = ("user", "server", "group", "service")
# Filters without a value, allowed in role definitions and bound to the holder on expansion.
_BARE_FILTERS = frozenset({"user", "service", "server"})

# Expanding 'self' for user u gives these, each with !user=u (JupyterHub's list).
_SELF_RAW = ("read:users", "users:shares", "read:shares", "users:activity", "servers",
             "tokens", "access:servers")


class ScopeNotFound(ValueError):
    """An unknown scope or a malformed filter; ``str(e)`` is JupyterHub's message."""

    @property
    def api_message(self) -> str:
        """The 400 message of ``POST /users/{name}/tokens``: JupyterHub's ScopeNotFound is a
        KeyError there, whose ``str`` is the quoted repr, e.g. ``"Scope 'x' for token ..."``."""
        return repr(str(self))


class ScopesNotHeld(ValueError):
    """Requested token scopes exceed what the owner holds (400 on token creation)."""

    def __init__(self, excess: frozenset[str], owner_kind: str, owner_name: str):
        self.excess = excess
        kind = "Service" if owner_kind == "service" else "User"
        super().__init__(
            f"Not assigning requested scopes {','.join(sorted(excess))}"
            f" not held by {kind} {owner_name}"
        )


# --------------------------------------------------------------------------- validation

def validate_scopes(
    raw: Iterable[str], *, who_for: str = "token", definitions: Definitions | None = None
) -> None:
    """Raise :class:`ScopeNotFound` for an unknown base scope or a malformed filter.

    ``who_for`` words the message like JupyterHub: ``"token"``, ``"role <name>"``, ``"share"``.
    Bare ``!user``/``!service``/``!server`` are allowed (bound at expansion).
    """
    defs = SCOPE_DEFINITIONS if definitions is None else definitions
    log_for = f" for {who_for}" if who_for else ""
    for scope in raw:
        base, _, filt = scope.partition("!")
        if base not in defs:
            if base == "all":
                raise ScopeNotFound("Draft scope 'all' is now called 'inherit'")
            raise ScopeNotFound(f"Scope '{scope}'{log_for} does not exist")
        if filt and not _filter_ok(filt):
            raise ScopeNotFound(
                f"Scope filter {filt} '!{filt}' in scope '{scope}'{log_for} does not exist"
            )


def _filter_ok(filt: str) -> bool:
    if filt in _BARE_FILTERS:
        return True
    kind, eq, value = filt.partition("=")
    # an empty value would later match nothing and crash JupyterHub's parser: refuse it here
    return bool(eq) and kind in FILTER_KINDS and bool(value)


# --------------------------------------------------------------------------- expansion

@lru_cache(maxsize=1024)
def _closure_default(base: str) -> frozenset[str]:
    return _closure(base, SCOPE_DEFINITIONS)


def _closure(base: str, defs: Definitions) -> frozenset[str]:
    """``base`` and every scope it implies, transitively."""
    seen: set[str] = set()
    stack = [base]
    while stack:  # bounded: each scope is visited once and the table is finite
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(defs[name].subscopes)
    return frozenset(seen)


def expand_scopes(
    raw: Iterable[str],
    *,
    owner_kind: str | None = None,
    owner_name: str | None = None,
    server_name: str | None = None,
    definitions: Definitions | None = None,
) -> frozenset[str]:
    """Expand raw scopes held by an owner (``owner_kind`` "user", "service" or "group").

    Subscopes are added; bare ``!user``/``!service`` bind to the owner, bare ``!server`` to
    ``<owner>/<server_name>``; bare filters that cannot bind are dropped (they grant nothing).
    ``self`` becomes the user's own scopes (nothing for others). ``inherit`` is left in place.
    Raises :class:`ScopeNotFound` for unknown scopes.
    """
    frozen = frozenset(raw)
    if definitions is None:
        return _expand_cached(frozen, owner_kind, owner_name, server_name)
    return _expand(frozen, owner_kind, owner_name, server_name, definitions)


@lru_cache(maxsize=4096)
def _expand_cached(raw: frozenset[str], owner_kind, owner_name, server_name) -> frozenset[str]:
    return _expand(raw, owner_kind, owner_name, server_name, None)


def _expand(raw, owner_kind, owner_name, server_name, definitions) -> frozenset[str]:
    defs = SCOPE_DEFINITIONS if definitions is None else definitions
    validate_scopes(raw, definitions=defs)
    binds: dict[str, str] = {}
    if owner_kind == "user" and owner_name:
        binds["user"] = f"user={owner_name}"
        if server_name is not None:
            binds["server"] = f"server={owner_name}/{server_name}"
    elif owner_kind == "service" and owner_name:
        binds["service"] = f"service={owner_name}"

    out: set[str] = set()
    for scope in raw:
        base, _, filt = scope.partition("!")
        names = _closure_default(base) if definitions is None else _closure(base, defs)
        if not filt:
            out |= names
            continue
        if filt in _BARE_FILTERS:
            if filt not in binds:
                continue  # nothing to bind to: grants nothing
            filt = binds[filt]
        if filt.startswith("server"):
            # a server filter makes no sense on user-level reads (read:servers -> read:users:name)
            names = {n for n in names if not n.startswith("read:user")}
        out.update(f"{n}!{filt}" for n in names)

    if "self" in out:
        out.discard("self")
        if owner_kind == "user" and owner_name:
            out |= _self_scopes(owner_name)
    return reduce_scopes(out)


def _self_scopes(user: str) -> frozenset[str]:
    names: set[str] = set()
    for s in _SELF_RAW:
        names |= _closure_default(s)
    return frozenset(f"{n}!user={user}" for n in names)


def identify_scopes(kind: str, name: str) -> frozenset[str]:
    """Scopes every credential has on its own owner (for ``GET /hub/api/user``)."""
    if kind == "user":
        return frozenset({f"read:users:name!user={name}", f"read:users:groups!user={name}"})
    if kind == "service":
        return frozenset({f"read:services:name!service={name}"})
    raise ValueError(f"identify_scopes: kind must be 'user' or 'service', not {kind!r}")


def access_scope(user: str, server_name: str | None = None, *, service: str | None = None) -> str:
    """The scope that opens a server (``access:servers!server=u/s``) or a service."""
    if service is not None:
        return f"access:services!service={service}"
    return f"access:servers!server={user}/{server_name or ''}"


# --------------------------------------------------------------------------- set algebra

def reduce_scopes(expanded: Iterable[str]) -> frozenset[str]:
    """Drop filtered scopes whose base is also held unfiltered (and duplicates)."""
    return unparse_scopes(parse_scopes(expanded))


def intersect_scopes(
    a: frozenset[str], b: frozenset[str], *, groups_of: Callable[[str], frozenset[str]]
) -> frozenset[str]:
    """What both expanded sets allow, following unfiltered ⊇ group ⊇ user ⊇ server.

    ``groups_of(user)`` gives a user's groups; it is called at most once per user.
    """
    pa, pb = parse_scopes(a), parse_scopes(b)
    cache: dict[str, frozenset[str]] = {}

    def groups(user: str) -> frozenset[str]:
        if user not in cache:
            cache[user] = frozenset(groups_of(user))
        return cache[user]

    out: Parsed = {}
    for base in pa.keys() & pb.keys():
        fa, fb = pa[base], pb[base]
        if fa is None or fb is None:
            out[base] = fb if fa is None else fa
            continue
        common = {k: fa[k] & fb[k] for k in fa.keys() & fb.keys()}
        servers = set(common.get("server", ()))
        users = set(common.get("user", ()))
        for x, y in ((fa, fb), (fb, fa)):
            y_users, y_groups = y.get("user", set()), y.get("group", set())
            for srv in x.get("server", ()):
                owner = srv.partition("/")[0]
                if srv not in servers and (
                    owner in y_users or (y_groups and groups(owner) & y_groups)
                ):
                    servers.add(srv)
            if y_groups:
                users.update(u for u in x.get("user", ()) if groups(u) & y_groups)
        common["server"], common["user"] = servers, users
        out[base] = common
    return unparse_scopes(out)


def excess_scopes(
    requested: frozenset[str], held: frozenset[str], *, groups_of: Callable[[str], frozenset[str]]
) -> frozenset[str]:
    """Expanded ``requested`` scopes not covered by ``held`` (empty: request allowed)."""
    requested = reduce_scopes(requested)
    return requested - intersect_scopes(requested, held, groups_of=groups_of)


def resolve_token_scopes(
    token_raw: Iterable[str],
    *,
    owner_scopes: frozenset[str],
    owner_kind: str,
    owner_name: str,
    groups_of: Callable[[str], frozenset[str]],
    server_name: str | None = None,
    extra: frozenset[str] = frozenset(),
    definitions: Definitions | None = None,
) -> frozenset[str]:
    """A token's effective expanded scopes, computed per request like JupyterHub.

    ``owner_scopes`` is the owner's current expanded set (roles, group roles, shares), so a
    demoted owner shrinks existing tokens. ``inherit`` gives exactly the owner's scopes.
    ``extra`` is for OAuth tokens: the access scope of the issuing server or service.
    """
    raw = frozenset(token_raw)
    if "inherit" in raw:
        return owner_scopes
    expanded = expand_scopes(raw, owner_kind=owner_kind, owner_name=owner_name,
                             server_name=server_name, definitions=definitions)
    expanded = reduce_scopes(expanded | extra | identify_scopes(owner_kind, owner_name))
    return intersect_scopes(expanded, owner_scopes, groups_of=groups_of)


def check_token_request(
    raw: Iterable[str],
    *,
    owner_scopes: frozenset[str],
    owner_kind: str,
    owner_name: str,
    groups_of: Callable[[str], frozenset[str]],
    definitions: Definitions | None = None,
) -> None:
    """Validate scopes asked for a new token: ScopeNotFound, or ScopesNotHeld if too many."""
    raw = [s for s in raw if s != "inherit"]
    validate_scopes(raw, definitions=definitions)
    wanted = expand_scopes(raw, owner_kind=owner_kind, owner_name=owner_name,
                           definitions=definitions)
    excess = excess_scopes(wanted, owner_scopes, groups_of=groups_of)
    if excess:
        raise ScopesNotHeld(excess, owner_kind, owner_name)


def missing_scope_message(required_any: Sequence[str]) -> str:
    """The 403 message for a credential holding none of ``required_any``."""
    return (
        "Action is not authorized with current scopes;"
        f" requires any of [{', '.join(required_any)}]"
    )
