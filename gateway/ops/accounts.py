"""Creating and deleting users, the one way every path does it (the REST API, the admin page, the idle
culler), so that a JupyterHub authenticator plugin hears of each as under JupyterHub:

- *admitted*: after the rows are made, the plugin's ``add_user`` (with ``allow_existing_users`` it adds the
  name to ``allowed_users``, so an admin-created user can log in); if it refuses, the users this call made
  are deleted again and the caller gets 400;
- *removed*: servers stopped first, then the plugin's ``delete_user`` (it drops the name from
  ``allowed_users``, so a deleted user cannot log in again), then the rows (tokens, sessions and
  memberships go with them) and the ServerManager's entries. JupyterHub's ``UserAPIHandler.delete``
  keeps that order.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.authenticators.builtin import Authenticator
from gateway.errors import ApiError
from gateway.servers import ServerManager
from gateway.store import Store
from gateway.vocab.models import User


async def admit_users(store: Store, authenticator: Authenticator, created: Sequence[User]) -> None:
    """Raises ApiError (400) when the authenticator refuses one; then none of ``created`` is kept."""
    try:
        for user in created:
            await authenticator.user_added(user)
    except ApiError:
        for user in created:
            await store.delete_user(user.id)
        raise


async def remove_user(store: Store, servers: ServerManager, authenticator: Authenticator | None, user: User) -> None:
    """Raises ApiError (503) when the authenticator refuses; the servers are stopped, the user stays."""
    await servers.stop_all(user)
    if authenticator is not None:
        await authenticator.user_deleted(user)
    await store.delete_user(user.id)
    servers.forget_user(user.name)
