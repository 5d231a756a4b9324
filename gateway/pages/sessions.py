"""Browser sessions: the login cookie, the ``_xsrf`` cookie and XSRF checks for hub forms.

- Login cookie ``gateway-login`` (``auth.SESSION_COOKIE``): the login session id, encrypted and
  signed (Fernet, ``Authorizer.session_cookie_value``); ``HttpOnly``, ``SameSite=Lax``, ``Secure``
  when served over https (the request, or ``public_url``), path ``base_url`` so that proxied
  ``/user/...`` requests carry it too. The session itself lives in the store: logout deletes it,
  which ends it everywhere at once.
- ``_xsrf`` cookie (path ``hub_prefix``, readable by the pages' JavaScript). For a logged-in user
  it holds the *hub XSRF token* ``Authorizer.xsrf_token(session_id, hub_prefix)``, the value every
  hub form and cookie-authenticated API call must present. Before login it holds a random
  *nonce*; the login form carries ``sign("login|" + nonce + "|" + User-Agent)``, which a page on
  another site can neither read nor compute, so a cross-site login post is refused (login CSRF).
"""

from __future__ import annotations

import secrets
import time

from aiohttp import web

from gateway import keys
from gateway.config import Settings
from gateway.errors import ApiError
from gateway.identity.caches import SESSION_COOKIE, XSRF_COOKIE
from gateway.vocab import security
from gateway.vocab.models import Identity, User

ANONYMOUS_XSRF_MAX_AGE = 3600
SESSION_ONLY_LIFETIME = 86400.0  # server-side lifetime when cookie_max_age_days is 0 (browser-session cookie)


def is_secure(request: web.Request, settings: Settings) -> bool:
    return request.secure or settings.public_url.lower().startswith("https:")


def _lifetime(settings: Settings) -> tuple[int | None, float]:
    """(cookie Max-Age or None for a browser-session cookie, server-side session lifetime in seconds)."""
    seconds = settings.cookie_max_age_days * 86400
    if seconds <= 0:
        return None, SESSION_ONLY_LIFETIME
    return int(seconds), seconds


def _set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str, *, path: str,
                max_age: int | None, httponly: bool) -> None:
    settings = request.config_dict[keys.SETTINGS]
    response.set_cookie(name, value, path=path, max_age=max_age, httponly=httponly, samesite="Lax",
                        secure=is_secure(request, settings) or None)


async def start_session(request: web.Request, response: web.StreamResponse, user: User,
                        previous: Identity | None = None) -> str:
    """Create a login session for ``user`` and set its cookies; a previous session of this browser ends."""
    settings, store = request.config_dict[keys.SETTINGS], request.config_dict[keys.STORE]
    authorizer = request.config_dict[keys.AUTHORIZER]
    if previous is not None and previous.session_id:
        await store.delete_session(previous.session_id)  # no session fixation, no two users in one browser
    max_age, lifetime = _lifetime(settings)
    session_id = secrets.token_urlsafe(32)
    await store.create_session(session_id, user.id, time.time() + lifetime)
    await store.touch_users({user.id: time.time()})
    _set_cookie(response, request, SESSION_COOKIE, authorizer.session_cookie_value(session_id),
                path=settings.base_url, max_age=max_age, httponly=True)
    _set_cookie(response, request, XSRF_COOKIE, authorizer.xsrf_token(session_id, settings.hub_prefix),
                path=settings.hub_prefix, max_age=max_age, httponly=False)
    return session_id


async def end_session(request: web.Request, response: web.StreamResponse, identity: Identity) -> None:
    """Delete the login session (and tokens issued within it) and clear the browser's cookies."""
    if identity.session_id:
        await request.config_dict[keys.STORE].delete_session(identity.session_id)
    clear_cookies(request, response)


def clear_cookies(request: web.Request, response: web.StreamResponse) -> None:
    settings = request.config_dict[keys.SETTINGS]
    response.del_cookie(SESSION_COOKIE, path=settings.base_url)
    response.del_cookie(XSRF_COOKIE, path=settings.hub_prefix)


# ---------------------------------------------------------------- XSRF for logged-in pages


def hub_xsrf_token(request: web.Request, identity: Identity) -> str:
    """The token hub forms and the pages' API calls present (X-XSRFToken / _xsrf)."""
    assert identity.session_id, "hub XSRF tokens exist only for cookie sessions"
    return request.config_dict[keys.AUTHORIZER].xsrf_token(identity.session_id, request.config_dict[keys.SETTINGS].hub_prefix)


def refresh_xsrf_cookie(request: web.Request, response: web.StreamResponse, identity: Identity) -> None:
    """Keep the ``_xsrf`` cookie equal to the session's token (it may hold a stale one)."""
    if not identity.session_id:
        return
    token = hub_xsrf_token(request, identity)
    if request.cookies.get(XSRF_COOKIE) != token:
        _set_cookie(response, request, XSRF_COOKIE, token, path=request.config_dict[keys.SETTINGS].hub_prefix,
                    max_age=_lifetime(request.config_dict[keys.SETTINGS])[0], httponly=False)


def check_form_xsrf(request: web.Request, identity: Identity, presented: str | None) -> None:
    """Refuse a state-changing page request whose XSRF token is missing or wrong (403)."""
    if not presented:
        raise ApiError(403, f"'_xsrf' argument missing from {request.method}")
    authorizer = request.config_dict[keys.AUTHORIZER]
    if not authorizer.check_xsrf(identity, presented, request.config_dict[keys.SETTINGS].hub_prefix):
        raise ApiError(403, "'_xsrf' argument invalid")


# ---------------------------------------------------------------- XSRF for the login form


def _anonymous_token(request: web.Request, nonce: str) -> str:
    agent = request.headers.get("User-Agent", "")[:512]
    return security.sign(request.config_dict[keys.COOKIE_SECRET], f"login|{nonce}|{agent}")


def _valid_nonce(value: str | None) -> bool:
    return bool(value) and 16 <= len(value) <= 128  # type: ignore[arg-type]


def login_form_xsrf(request: web.Request) -> tuple[str, str | None]:
    """(token for the login form, new nonce to set with ``set_login_nonce`` or None if the browser has one)."""
    nonce = request.cookies.get(XSRF_COOKIE)
    fresh = None
    if not _valid_nonce(nonce):
        nonce = fresh = secrets.token_urlsafe(24)
    return _anonymous_token(request, nonce), fresh  # type: ignore[arg-type]


def set_login_nonce(request: web.Request, response: web.StreamResponse, nonce: str) -> None:
    _set_cookie(response, request, XSRF_COOKIE, nonce, path=request.config_dict[keys.SETTINGS].hub_prefix,
                max_age=ANONYMOUS_XSRF_MAX_AGE, httponly=False)


def check_login_xsrf(request: web.Request, presented: str | None) -> bool:
    nonce = request.cookies.get(XSRF_COOKIE)
    if not presented or not _valid_nonce(nonce):
        return False
    return security.constant_time_equals(presented, _anonymous_token(request, nonce))  # type: ignore[arg-type]
