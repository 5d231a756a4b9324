"""Helpers for the LDAP login tests: an operator's config for a slapd fixture, a started gateway process,
browser-like clients, API calls with a service token."""

from __future__ import annotations

import json
import textwrap

import aiohttp

from tests.login.slapd import PEOPLE, group_dn
from tests.helpers.pages import Browser

AUDITOR_TOKEN = "auditor-token-0123456789"
READER_TOKEN = "reader-token-0123456789"
CRYPT_KEY = "a" * 64  # 32 bytes, hex


def ldap_config(slapd, body: str = "", *, allowed_groups=("jupyter",)) -> str:
    groups = ", ".join(repr(group_dn(g)) for g in allowed_groups)
    return textwrap.dedent(f"""\
        c = get_config()  # noqa
        c.JupyterHub.authenticator_class = "ldapauthenticator.LDAPAuthenticator"
        c.JupyterHub.db_url = "sqlite:///gateway.sqlite"
        c.LDAPAuthenticator.server_address = "127.0.0.1"
        c.LDAPAuthenticator.server_port = {slapd.port}
        c.LDAPAuthenticator.tls_strategy = "insecure"
        c.LDAPAuthenticator.bind_dn_template = ["uid={{username}},{PEOPLE}"]
        c.LDAPAuthenticator.allowed_groups = [{groups}]
        c.Spawner.cmd = ["true"]
        """) + textwrap.dedent(body)


SERVICES = f"""
c.JupyterHub.services = [
    {{"name": "auditor", "api_token": "{AUDITOR_TOKEN}"}},
    {{"name": "reader", "api_token": "{READER_TOKEN}"}},
]
c.JupyterHub.load_roles = [
    {{"name": "auditor", "scopes": ["list:users", "read:users", "admin:auth_state"], "services": ["auditor"]}},
    {{"name": "reader", "scopes": ["read:users"], "services": ["reader"]}},
]
"""


async def started(gateway_process, config: str):
    proc = gateway_process(config)
    proc.start()
    await proc.wait_ready()
    return proc


async def whoami(browser: Browser) -> str | None:
    async with browser.session.get(browser.base + "/hub/api/user") as r:
        return (await r.json())["name"] if r.status == 200 else None


async def api(proc, path: str, token: str, *, method: str = "GET", body=None):
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"token {token}"} if token else {}
        async with session.request(method, proc.url + "/hub/api" + path, json=body, headers=headers) as r:
            text = await r.text()
            return r.status, json.loads(text) if text and r.content_type == "application/json" else None
