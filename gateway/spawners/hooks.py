"""JupyterHub's spawner hooks and options, for any spawner (gateway's own local one included).

Vocabulary:
- hooks (SpawnHooks): what ``c.Spawner.*`` configures around a start, as JupyterHub 5+/6 runs them:
  ``auth_state_hook(spawner, auth_state)``, ``group_overrides``, ``apply_user_options(spawner, opts)``,
  ``pre_spawn_hook(spawner)`` before start (in that order), ``post_stop_hook(spawner)`` after stop.
- options form: ``options_form`` (HTML, or a callable of the spawner, maybe async) shown on the spawn
  page; ``options_from_form`` turns the posted form (a dict of lists of strings) into user_options.

This module never imports jupyterhub: the local spawner must run without it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("gateway.spawners.hooks")


class UserOptionsError(Exception):
    """apply_user_options refused the user's options: a 400 for the caller, as in JupyterHub."""


async def maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


AuthStateReader = Callable[[str], Awaitable[Any]]


# The one place auth_state is read for spawners (auth_state_hook, user.get_auth_state()). The reader
# is the authenticator's (decrypting with JUPYTERHUB_CRYPT_KEY); None when no auth_state is kept.
async def read_auth_state(reader: AuthStateReader | None, user_name: str) -> Mapping[str, Any] | None:
    return None if reader is None else await reader(user_name)


def passthrough_options(form_data: Mapping[str, list[str]]) -> dict[str, Any]:
    return dict(form_data)


def simple_options(form_data: Mapping[str, list[str]]) -> dict[str, Any]:
    """JupyterHub 5.3's 'simple': single values unpacked, a checkbox's 'on' becomes True."""
    options: dict[str, Any] = {}
    for key, values in form_data.items():
        if len(values) == 1:
            options[key] = True if values[0] == "on" else values[0]
        else:
            options[key] = list(values)
    return options


@dataclass(frozen=True)
class SpawnHooks:
    pre_spawn_hook: Callable[..., Any] | None = None
    post_stop_hook: Callable[..., Any] | None = None
    auth_state_hook: Callable[..., Any] | None = None
    apply_user_options: Callable[..., Any] | Mapping[str, str] | None = None
    group_overrides: Callable[..., Any] | Mapping[str, Any] | None = None
    options_form: str | Callable[..., Any] = ""
    options_from_form: Callable[..., Any] | str = "passthrough"


def recursive_update(target: dict, new: Mapping) -> None:
    """JupyterHub's merge for dict overrides: nested dicts merge, a None value deletes the key."""
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            recursive_update(target[key], value)
        elif value is None:
            target.pop(key, None)
        else:
            target[key] = value


def apply_overrides(spawner: Any, overrides: Mapping[str, Any]) -> None:
    for name, value in overrides.items():
        if callable(value):
            value = value(spawner)
        current = getattr(spawner, name, None)
        if isinstance(value, Mapping) and isinstance(current, dict):
            recursive_update(current, value)
        else:
            setattr(spawner, name, value)


async def apply_group_overrides(spawner: Any, group_overrides: Any, groups: set[str]) -> None:
    if not group_overrides:
        return
    overrides = await maybe_await(group_overrides(spawner)) if callable(group_overrides) else group_overrides
    for key in sorted(overrides or {}):
        rule = overrides[key]
        if groups & set(rule.get("groups", ())):
            log.info("Applying group_override %s for %s", key, getattr(spawner.user, "name", "?"))
            apply_overrides(spawner, rule.get("spawner_override", {}))


async def apply_user_options(spawner: Any, hook: Any, user_options: Mapping[str, Any]) -> None:
    """JupyterHub's _run_apply_user_options: a callable, or a {option: attribute} dict."""
    try:
        if isinstance(hook, Mapping):
            for key, value in user_options.items():
                attr = hook.get(key)
                if attr is None:
                    log.warning("Unhandled user option %s", key)
                elif hasattr(spawner, attr):
                    setattr(spawner, attr, value)
        elif hook:
            await maybe_await(hook(spawner, dict(user_options)))
    except UserOptionsError:
        raise
    except Exception as exc:
        log.warning("apply_user_options refused %r: %s", list(user_options), exc)
        raise UserOptionsError("Invalid user options") from exc


async def run_before_start(spawner: Any, hooks: SpawnHooks, auth_state: Mapping[str, Any] | None,
                           groups: set[str], user_options: Mapping[str, Any]) -> None:
    """JupyterHub's order: auth_state_hook, group_overrides, apply_user_options, pre_spawn_hook."""
    if hooks.auth_state_hook is not None:
        await maybe_await(hooks.auth_state_hook(spawner, auth_state))
    await apply_group_overrides(spawner, hooks.group_overrides, groups)
    await apply_user_options(spawner, hooks.apply_user_options, user_options)
    if hooks.pre_spawn_hook is not None:
        await maybe_await(hooks.pre_spawn_hook(spawner))


async def run_after_stop(spawner: Any, hooks: SpawnHooks) -> None:
    """post_stop_hook; its failure is logged, never raised (the server is stopped either way)."""
    if hooks.post_stop_hook is None:
        return
    try:
        await maybe_await(hooks.post_stop_hook(spawner))
    except Exception:
        log.exception("post_stop_hook failed")


async def render_options_form(spawner: Any, form: Any) -> str:
    if callable(form):
        form = await maybe_await(form(spawner))
    return str(form or "")


def run_options_from_form(spawner: Any, converter: Any, form_data: Mapping[str, list[str]]) -> dict[str, Any]:
    if converter in (None, "", "passthrough"):
        converter = passthrough_options
    elif converter == "simple":
        converter = simple_options
    if "spawner" in inspect.signature(converter).parameters:
        options = converter(form_data, spawner=spawner)
    else:
        options = converter(form_data)
    if not isinstance(options, Mapping):
        raise UserOptionsError("options_from_form must return a dict")
    return dict(options)


def as_hook(value: Any) -> Callable[..., Any] | None:
    if value is not None and not callable(value):
        raise ValueError(f"expected a function, got {type(value).__name__}")
    return value


def as_options_form(value: Any) -> str | Callable[..., Any]:
    if not (isinstance(value, str) or callable(value)):
        raise ValueError(f"expected an HTML string or a function of the spawner, got {type(value).__name__}")
    return value


def as_options_from_form(value: Any) -> str | Callable[..., Any]:
    if value in ("simple", "passthrough") or callable(value):
        return value
    raise ValueError("expected a function of the form data, 'simple' or 'passthrough'")


def as_callable_or_dict(value: Any) -> Callable[..., Any] | Mapping[str, Any] | None:
    if value is None or callable(value) or isinstance(value, Mapping):
        return value
    raise ValueError(f"expected a function or a dict, got {type(value).__name__}")


_UNITS = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}


def as_byte_spec(value: Any) -> int | None:
    """JupyterHub's ByteSpecification: an int of bytes, or '512M', '2G', '1.5T'."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip()
    if text and text[-1].upper() in _UNITS:
        try:
            return int(float(text[:-1]) * _UNITS[text[-1].upper()])
        except ValueError:
            pass
    elif text.isdigit():
        return int(text)
    raise ValueError(f"expected bytes such as 536870912, '512M' or '2G', got {value!r}")


def as_cpu(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number of CPUs, got {value!r}")
    return float(value)


AuthStateReader = Callable[[Any, str], Awaitable[Mapping[str, Any] | None]]
