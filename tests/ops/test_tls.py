"""https served by gateway itself (``c.JupyterHub.ssl_cert`` / ``ssl_key``), as JupyterHub's proxy serves it:
a real gateway process with a certificate made here, a browser-like client that trusts only that
certificate, jupyterhub-singleuser behind it (whose HubAuth asks the hub API over the plain-http
listener on hub_ip:hub_port), and the refusals of a half or broken TLS config."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import signal
import ssl
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers.hub import free_port
from tests.helpers.processes import new_tokens, users_config
from tests.helpers.services import eventually

SINGLEUSER = Path(sys.executable).parent / "jupyterhub-singleuser"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (0600), as an operator's files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "hub.crt", directory / "hub.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def tls_config(tokens: dict[str, str], cert: Path, key: Path, hub_port: int, extra: str = "") -> str:
    return users_config(tokens, f"c.JupyterHub.ssl_cert = {str(cert)!r}\n"
                                f"c.JupyterHub.ssl_key = {str(key)!r}\n"
                                f"c.JupyterHub.hub_port = {hub_port}\n" + extra)


async def test_https_with_singleuser_behind_it(gateway_process, tmp_path):
    if not SINGLEUSER.exists():
        (pytest.fail if os.environ.get("CI") else pytest.skip)("jupyterhub-singleuser is not installed")
    cert, key = self_signed(tmp_path)
    client_tls = ssl.create_default_context(cafile=str(cert))
    tokens = new_tokens(["alice"])
    hub_port = free_port()
    proc = gateway_process(tls_config(tokens, cert, key, hub_port,
                                      f"c.Spawner.cmd = [{str(SINGLEUSER)!r}]\nc.Spawner.start_timeout = 120\n"
                                      "c.Spawner.disable_user_config = True\n"  # accepted with singleuser
                                      "c.JupyterHub.log_level = 'INFO'\n"))
    proc.start()
    url = f"https://127.0.0.1:{proc.port}"
    await proc.wait_ready(url=url, ssl=client_tls)
    alice = {"Authorization": f"token {tokens['alice']}"}
    async with aiohttp.ClientSession() as session:
        # plain http on the public port gets no hub
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"http://127.0.0.1:{proc.port}/hub/api/", timeout=aiohttp.ClientTimeout(10)) as r:
                await r.read()
        # the hub API in plain http on hub_port, on loopback, for servers and services; nothing else there
        async with session.get(f"http://127.0.0.1:{hub_port}/hub/api/") as r:
            assert r.status == 200 and "version" in await r.json()
        for path in ("/hub/login", "/user/alice/api/status", "/"):
            async with session.get(f"http://127.0.0.1:{hub_port}{path}", headers=alice, allow_redirects=False) as r:
                assert r.status == 404, (path, r.status)
        # the login form over https: its cookie is Secure
        async with session.get(url + "/hub/login", ssl=client_tls) as r:
            assert r.status == 200 and "; Secure" in r.headers["Set-Cookie"], r.headers
        async with session.post(url + "/hub/api/users/alice/server", headers=alice, ssl=client_tls) as r:
            assert r.status in (201, 202), await r.text()
        deadline = time.monotonic() + 120
        while True:
            async with session.get(url + "/hub/api/users/alice/server", headers=alice, ssl=client_tls) as r:
                if r.status == 200 and (await r.json()).get("ready"):
                    break
            assert time.monotonic() < deadline, proc.log()[-3000:]
            await asyncio.sleep(0.2)
        # through https to jupyterhub-singleuser, whose HubAuth checks with the hub over hub_port
        async with session.get(url + "/user/alice/api/status", headers=alice, ssl=client_tls) as r:
            assert r.status == 200, (r.status, await r.text(), proc.log()[-3000:])
        async with session.delete(url + "/hub/api/users/alice/server", headers=alice, ssl=client_tls) as r:
            assert r.status in (202, 204)
    log = proc.log()
    assert f"listening on https://127.0.0.1:{proc.port}/" in log
    assert f"listening on http://127.0.0.1:{hub_port}/ (the hub API for servers and services)" in log
    assert "Traceback" not in log


def test_half_or_broken_tls_config_stops_the_start(gateway_process, tmp_path):
    cert, key = self_signed(tmp_path)
    cases = [
        (f"c.JupyterHub.ssl_cert = {str(cert)!r}\n", "ssl_cert and JupyterHub.ssl_key go together"),
        (f"c.JupyterHub.ssl_cert = {str(cert)!r}\nc.JupyterHub.ssl_key = {str(tmp_path / 'missing.key')!r}\n",
         "cannot load the certificate and key"),
        (f"c.JupyterHub.ssl_cert = {str(key)!r}\nc.JupyterHub.ssl_key = {str(key)!r}\n",
         "cannot load the certificate and key"),
    ]
    for body, message in cases:
        proc = gateway_process(users_config({}, body))
        result = proc.run_cli("-f", str(proc.config_path), f"--port={proc.port}", "--ip=127.0.0.1")
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


async def served_by(url: str, trusted: Path) -> bool:
    """Whether the certificate at ``url`` verifies against ``trusted`` alone."""
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/hub/health", ssl=ssl.create_default_context(cafile=str(trusted))) as r:
                return r.status == 200
    except aiohttp.ClientConnectorCertificateError:
        return False


async def test_a_certificate_renewed_in_place_is_served_after_sighup(gateway_process, tmp_path):
    cert, key = self_signed(tmp_path)
    (tmp_path / "renewed").mkdir()
    new_cert, new_key = self_signed(tmp_path / "renewed")
    old_copy = tmp_path / "old.crt"
    old_copy.write_bytes(cert.read_bytes())
    proc = gateway_process(tls_config({}, cert, key, free_port(), "c.JupyterHub.log_level = 'INFO'\n"))
    proc.start()
    url = f"https://127.0.0.1:{proc.port}"
    await proc.wait_ready(url=url, ssl=ssl.create_default_context(cafile=str(cert)))
    # a half-renewed pair (the new certificate, the old key): refused, the old pair stays in use
    cert.write_bytes(new_cert.read_bytes())
    proc.signal(signal.SIGHUP)
    await eventually(lambda: "Keeping the TLS certificate in use" in proc.log(), timeout=10)
    assert await served_by(url, old_copy) and not await served_by(url, new_cert)
    # the whole new pair: served to new connections after the next SIGHUP
    key.write_bytes(new_key.read_bytes())
    proc.signal(signal.SIGHUP)
    await eventually(lambda: "Reloaded the TLS certificate" in proc.log(), timeout=10)
    assert await served_by(url, new_cert) and not await served_by(url, old_copy)
    assert "Traceback" not in proc.log()
