"""Expanded scope sets, parsed: :class:`Scopes` answers "may this holder do that, to which resources"
with a few lookups per request, and :class:`ListFilter` says which items of a list to show.

Pure data, like :mod:`gateway.vocab.scopes` (expansion, set algebra, validation), which re-exports
these names. Vocabulary (expanded scope, filter) as there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from gateway.vocab.scope_table import GROUP_FIELDS, SERVICE_FIELDS, USER_FIELDS

Parsed = dict[str, dict[str, set[str]] | None]  # base -> None (unfiltered) or kind -> names


def parse_scopes(expanded: Iterable[str]) -> Parsed:
    """Expanded scopes indexed by base: None when held unfiltered, else the filter values by kind."""
    parsed: Parsed = {}
    for scope in expanded:
        base, _, filt = scope.partition("!")
        if not filt:
            parsed[base] = None
            continue
        kind, _, value = filt.partition("=")
        if not value:
            raise ValueError(f"Unexpanded or empty scope filter in {scope!r}")
        filters = parsed.setdefault(base, {})
        if filters is not None:
            filters.setdefault(kind, set()).add(value)
    return parsed


def unparse_scopes(parsed: Parsed) -> frozenset[str]:
    """Back to expanded scopes: an unfiltered base drops its filters."""
    out: set[str] = set()
    for base, filters in parsed.items():
        if filters is None:
            out.add(base)
        else:
            out.update(f"{base}!{kind}={v}" for kind, values in filters.items() for v in values)
    return frozenset(out)


@dataclass(frozen=True)
class _Filters:
    """The filters one base scope is held with (it is not held unfiltered)."""

    users: frozenset[str] = frozenset()
    servers: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ListFilter:
    """Which items of a post-filtered list (``GET /users``, ``/groups``, ``/services``) to show."""

    all: bool
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    servers: frozenset[str] = frozenset()

    @property
    def kinds(self) -> frozenset[str]:
        """Filter kinds present; ``GET /users`` answers 403 if any is not user or group."""
        return frozenset(k for k, v in (("user", self.users), ("group", self.groups),
                                        ("service", self.services), ("server", self.servers)) if v)

    def allows_user(self, name: str, user_groups: frozenset[str] = frozenset()) -> bool:
        return self.all or name in self.users or not self.groups.isdisjoint(user_groups)

    def allows_group(self, name: str) -> bool:
        return self.all or name in self.groups

    def allows_service(self, name: str) -> bool:
        return self.all or name in self.services

    def allows_server(self, full_name: str, user_groups: frozenset[str] = frozenset()) -> bool:
        return (self.all or full_name in self.servers
                or self.allows_user(full_name.partition("/")[0], user_groups))


Decision = Literal["ok", "other", "missing"]


class Scopes:
    """An expanded scope set, indexed for cheap repeated checks.

    ``check`` is the decision behind every scope-protected request; resources are named like
    JupyterHub's URL arguments: ``user``, ``server`` (``"<user>/<server>"``, ``"alice/"`` for
    the default one; pass ``user`` too or let it be derived), ``group``, ``service``.
    """

    __slots__ = ("expanded", "_unfiltered", "_filtered")
    EMPTY: ClassVar[Scopes]

    def __init__(self, expanded: frozenset[str], unfiltered: frozenset[str],
                 filtered: Mapping[str, _Filters]):
        self.expanded = expanded
        self._unfiltered = unfiltered
        self._filtered = filtered

    @classmethod
    def from_expanded(cls, expanded: Iterable[str]) -> Scopes:
        expanded = frozenset(expanded)
        parsed = parse_scopes(expanded)
        unfiltered = frozenset(b for b, f in parsed.items() if f is None)
        filtered = {
            base: _Filters(
                users=frozenset(f.get("user", ())), servers=frozenset(f.get("server", ())),
                groups=frozenset(f.get("group", ())), services=frozenset(f.get("service", ())),
            )
            for base, f in parsed.items() if f is not None
        }
        return cls(expanded, unfiltered, filtered)

    def __repr__(self) -> str:
        return f"Scopes({sorted(self.expanded)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Scopes) and other.expanded == self.expanded

    def __hash__(self) -> int:
        return hash(self.expanded)

    def check(
        self,
        required_any: Sequence[str],
        *,
        user: str | None = None,
        server: str | None = None,
        group: str | None = None,
        service: str | None = None,
        user_groups: frozenset[str] = frozenset(),
        post_filter: bool = False,
    ) -> Decision:
        """Decide a request needing any of ``required_any`` (base scopes) on one resource.

        "ok": held unfiltered or with a filter covering the resource. "other": held only with
        filters for other resources (404 :data:`gateway.vocab.scopes.SCOPE_MESSAGE_NOT_FOUND`). "missing": not held
        in any form (403 :func:`missing_scope_message`). With no resource named, only an
        unfiltered scope is "ok" unless ``post_filter`` (list endpoints that filter results).
        Note: for that no-resource, filtered-only case JupyterHub answers 403 with the
        missing-scope message, not 404; map "other" accordingly to match it exactly.
        """
        if server is not None:
            owner, slash, _ = server.partition("/")
            if not slash or (user is not None and user != owner):
                raise ValueError(f"server must be '<user>/<name>' of user {user!r}: {server!r}")
            user = owner
            kind = "server"
        elif user is not None:
            kind = "user"
        elif group is not None:
            kind = "group"
        elif service is not None:
            kind = "service"
        else:
            kind = None
        if kind is not None and sum(x is not None for x in (user, group, service)) > 1:
            raise ValueError("check: name one resource (server+user count as one)")

        held_filtered = False
        for scope in required_any:
            if scope in self._unfiltered:
                return "ok"
            f = self._filtered.get(scope)
            if f is None:
                continue
            held_filtered = True
            if kind == "server" or kind == "user":
                if (user in f.users or (kind == "server" and server in f.servers)
                        or not f.groups.isdisjoint(user_groups)):
                    return "ok"
            elif kind == "group":
                if group in f.groups:
                    return "ok"
            elif kind == "service":
                if service in f.services:
                    return "ok"
        if held_filtered:
            return "ok" if (kind is None and post_filter) else "other"
        return "missing"

    def has(self, scope: str, **resource) -> bool:
        """True if the single base ``scope`` is held for the resource (same keywords as check)."""
        return self.check((scope,), **resource) == "ok"

    def list_filter(self, scope: str) -> ListFilter | None:
        """How a post-filtered list is cut down: None if ``scope`` is not held at all."""
        if scope in self._unfiltered:
            return ListFilter(all=True)
        f = self._filtered.get(scope)
        if f is None:
            return None
        return ListFilter(all=False, users=f.users, groups=f.groups, services=f.services,
                          servers=f.servers)

    def _fields(self, table: Mapping[str, frozenset[str]], **resource) -> frozenset[str]:
        keys: set[str] = set()
        for scope, fields in table.items():
            if self.has(scope, **resource):
                keys |= fields
        return frozenset(keys)

    def fields_for_user(
        self, name: str, user_groups: frozenset[str] = frozenset()
    ) -> frozenset[str]:
        """User-model keys this set may see on user ``name`` (empty: hide the user)."""
        return self._fields(USER_FIELDS, user=name, user_groups=user_groups)

    def fields_for_group(self, name: str) -> frozenset[str]:
        return self._fields(GROUP_FIELDS, group=name)

    def fields_for_service(self, name: str) -> frozenset[str]:
        return self._fields(SERVICE_FIELDS, service=name)


Scopes.EMPTY = Scopes.from_expanded(())
