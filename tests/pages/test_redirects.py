"""next= validation (security cases R1-R3, promise 9): the table of safe_next_url, then over real HTTP."""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

import pytest

from gateway import keys
from gateway.pages.redirects import safe_next_url
from tests.helpers.pages import add_user

PASSWORD = "correct horse battery"
E = "evil.example"


class FakeRequest:
    """Only what safe_next_url reads: the app's settings and the Host the request was sent to."""

    def __init__(self, host: str, public_url: str = ""):
        from gateway import keys
        from gateway.config import Settings

        self.host = host
        self.config_dict = {keys.SETTINGS: Settings(public_url=public_url)}


H = "127.0.0.1:8000"


@pytest.mark.parametrize("value, expected", [
    ("/hub/home", "/hub/home"),
    ("/user/bob/lab?x=1#frag", "/user/bob/lab?x=1#frag"),
    ("/%2F%2Fevil", "/%2F%2Fevil"),
    ("/%5Cevil", "/%5Cevil"),
    ("/hub/caf\u00e9", "/hub/caf%C3%A9"),
    (f"http://{H}/hub/home?a=b", "/hub/home?a=b"),
    (f"HTTPS://{H}/x", "/x"),
    (f"http://{H}//{E}/", f"/{E}/"),  # CVE-2026-33709
    (f"http://{H}///{E}/", f"/{E}/"),
    (f"//{H}/hub/token", "/hub/token"),
    ("", None), (None, None),
    ("hub/home", None), ("evil.example", None), ("./x", None),
    (f"//{E}", None), (f"///{E}/triple", None), (f"////{E}", None),
    (f"\\\\{E}/x", None), (f"/\\{E}", None), (f"\\/{E}", None),
    (f"https://{E}", None), (f"http://{E}/", None), (f"ftp://{E}", None),
    (f"http:{E}", None), (f"https:/{E}", None),
    (f" //{E}", None), (f"\t//{E}", None), (f"/\t/{E}", None), (f"/\n/{E}", None), (f"\x00//{E}", None),
    ("javascript:alert(1)", None), ("data:text/html,hi", None),
    (f"http://{H}@{E}/", None), (f"http://{E}\\@{H}/", None), (f"http://{H}.{E}/", None),
    (f"//{H}@{E}", None), (f"http://{E}#@{H}/", None), (f"http://{H}:1/x", None),
    ("/x" * 3000, None),
])
def test_safe_next_url_table(value, expected):
    assert safe_next_url(value, FakeRequest(H)) == expected


def test_public_url_host_counts_as_own():
    request = FakeRequest(H, public_url="https://hub.example.org/")
    assert safe_next_url("https://hub.example.org//x/", request) == "/x/"
    assert safe_next_url(f"http://{H}/y", request) == "/y"
    assert safe_next_url("https://other.example.org/x", request) is None


R1_PAYLOADS = [
    f"//{E}", f"///{E}/triple", f"////{E}", f"\\\\{E}/x", f"/\\{E}", f"\\/{E}", f"https://{E}", f"http://{E}/",
    f"ftp://{E}", f"http:{E}", f"https:/{E}", f" //{E}", f"\t//{E}", f"/\t/{E}", "javascript:alert(1)",
    "data:text/html,hi", "http://{H}@{E}/", "http://{E}\\@{H}/", "http://{H}.{E}/", "//{H}@{E}", "http://{E}#@{H}/",
    "http://{H}//{E}/", "http://{H}///{E}/", f"/%2F%2F{E}", f"/%5C{E}",
]


def stays_on_host(location: str, host: str) -> bool:
    """How a browser resolves a Location: tabs/CR/LF removed, backslash as slash; it must stay on ``host``."""
    cleaned = re.sub(r"[\t\r\n]", "", location).strip().replace("\\", "/")
    if cleaned.startswith("/") and not cleaned.startswith("//"):
        return True
    parts = urlsplit(cleaned)
    return parts.scheme in ("http", "https") and parts.netloc == host


async def test_login_redirect_stays_on_host(page_hub, browsers):
    """R1: a logged-in GET /hub/login?next=P for 25 payloads; R2: the login POST with next."""
    hub = await page_hub()
    await add_user(hub, "alice", PASSWORD)
    host = hub.url.split("//", 1)[1]
    for payload in R2_PAYLOADS:
        browser = browsers(hub)
        status, _, headers = await browser.login("alice", PASSWORD, next_url=payload.format(H=host, E=E))
        assert status == 302 and stays_on_host(headers["Location"], host), (payload, headers["Location"])
    browser = browsers(hub)
    await browser.login("alice", PASSWORD)
    for payload in R1_PAYLOADS:
        value = payload.format(H=host, E=E)
        status, text, headers = await browser.get("/hub/login?next=" + quote(value, safe=""))
        assert status == 302, payload
        assert stays_on_host(headers["Location"], host), (payload, headers["Location"])
    status, _, headers = await browser.get("/hub/login?next=" + quote(f"http://{host}//{E}/", safe=""))
    assert headers["Location"] == f"/{E}/"


R2_PAYLOADS = [f"//{E}", f"///{E}", f"/\\{E}", f"https://{E}", "http://{H}//{E}/"]


async def test_next_is_not_reflected_raw(page_hub, browsers):
    """I1: a next value with markup is dropped, and never echoed into the login page."""
    hub = await page_hub()
    status, text, _ = await browsers(hub).get('/hub/login?next="><script>alert(1)</script>')
    assert status == 200 and "<script>alert(1)" not in text


async def test_user_redirect_stays_on_host(page_hub, browsers):
    """R3 and JupyterHub's /hub/user-redirect: on to /hub/spawn/<me>?next=/user/<me>/<path>."""
    hub = await page_hub()
    alice = await add_user(hub, "alice", PASSWORD)
    entry, _ = await hub.app[keys.SERVERS].start(alice, "")
    await hub.app[keys.SERVERS].wait(entry, 30)
    assert entry.ready  # the chains below go through the proxy to a running server
    browser = browsers(hub)
    await browser.login("alice", PASSWORD, next_url="/hub/home")
    host = hub.url.split("//", 1)[1]
    status, _, headers = await browser.get("/hub/user-redirect/lab/tree/x.ipynb?kernel=1")
    assert status == 302
    assert headers["Location"] == "/hub/spawn/alice?next=" + quote("/user/alice/lab/tree/x.ipynb?kernel=1", safe="")
    for path in (f"/hub/user-redirect//{E}/x", f"/hub/user-redirect/%2F%2F{E}", f"/hub/user-redirect/\\{E}"):
        url, hops = path, 0
        while hops < 8:  # follow the chain: every hop stays on this host, and it ends
            status, _, headers = await browser.get(url)
            if status not in (301, 302, 303):
                break
            location = headers["Location"]
            assert stays_on_host(location, host), (path, location)
            url, hops = location, hops + 1
        assert status not in (301, 302, 303), (path, url)  # no redirect loop
