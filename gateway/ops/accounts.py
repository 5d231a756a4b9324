"""Creating and deleting users, the one way every path does it (the REST API, the admin page, the idle
culler), so that a JupyterHub authenticator plugin hears of each as under JupyterHub:

- *admitted*: after the rows are made, the plugin's ``add_user`` (with ``allow_existing_users`` it adds the
  name to ``allowed_users``, so an admin-created user can log in); if it refuses, the users this call made
  are deleted again and the caller gets 400;
- *removed*: servers stopped first (after ``refresh_pre_stop``'s refresh, as every stop), then the
  plugin's ``delete_user`` (it drops the name from
  ``allowed_users``, so a deleted user cannot log in again), then the rows (tokens, sessions and
  memberships go with them) and the ServerManager's entries. JupyterHub's ``UserAPIHandler.delete``
  keeps that order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from gateway.authenticators.builtin import Authenticator
from gateway.errors import ApiError
from gateway.servers import ServerManager
from gateway.store import Store
from gateway.vocab.models import User


async def admit_users(store: Store, authenticator: Authenticator, created: Sequence[User]) -> None:
    """Raises ApiError (400) when the authenticator refuses one; then none of ``created`` is kept: the
    ones it had admitted are withdrawn from it again (``delete_user``) and every row is deleted."""
    admitted: list[User] = []
    try:
        for user in created:
            await authenticator.user_added(user)
            admitted.append(user)
    except ApiError:
        for user in admitted:
            with contextlib.suppress(ApiError):  # logged by the authenticator; the rows go regardless
                await authenticator.user_deleted(user)
        for user in created:
            await store.delete_user(user.id)
        raise


async def remove_user(store: Store, servers: ServerManager, authenticator: Authenticator | None, user: User) -> None:
    """Raises ApiError when a server is still stopping after the wait (400, as JupyterHub: the user stays,
    so no process is left without its record), or when the authenticator refuses (503)."""
    await stop_all_servers(servers, authenticator, user)
    if servers.has_active(user.name):
        raise ApiError(400, f"{user.name}'s server is in the process of stopping, please wait.")
    if authenticator is not None:
        await authenticator.user_deleted(user)
    await store.delete_user(user.id)
    servers.forget_user(user.name)


async def stop_all_servers(servers: ServerManager, authenticator: Authenticator | None, user: User) -> None:
    """Every server of ``user`` stopped (bounded wait), after the authenticator's ``refresh_pre_stop``
    refresh when there is something to stop: for logout and deletion, which no stop request asked for."""
    if authenticator is not None and servers.has_active(user.name):
        await authenticator.refresh_for_stop(user)
    await servers.stop_all(user)

