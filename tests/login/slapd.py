"""A real OpenLDAP server (Debian's slapd) on a loopback port, with a small directory, for login tests.

Each ``Slapd`` has its own config file, mdb database and pid file in a temporary folder; the directory is
loaded offline with ``slapadd`` before the server starts, and the server is stopped by its own pid.
A system slapd the package may have started is never touched.

The directory (suffix ``dc=example,dc=org``):
- ``ou=people``: alice, bob, carol, dave (inetOrgPerson + posixAccount, salted-SHA passwords from
  ``slappasswd``); each password is ``<name>-secret``.
- ``ou=groups``: ``cn=jupyter`` (groupOfNames: alice, carol), ``cn=staff`` (groupOfNames: carol),
  ``cn=outsiders`` (groupOfNames: bob), ``cn=posix-users`` (posixGroup, memberUid: dave).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
USERS = {  # uid: (uidNumber, mail, department)
    "alice": (2001, "alice@example.org", "physics"),
    "bob": (2002, "bob@example.org", "chemistry"),
    "carol": (2003, "carol@example.org", "computing"),
    "dave": (2004, "dave@example.org", "biology"),
}
GROUP_MEMBERS = {"jupyter": ("alice", "carol"), "staff": ("carol",), "outsiders": ("bob",)}
POSIX_GROUP = ("posix-users", 3000, ("dave",))
SCHEMAS = ("core", "cosine", "nis", "inetorgperson")
SLAPD = "/usr/sbin/slapd"
START_ATTEMPTS = 200  # polls of the port, 50 ms apart


def password_of(uid: str) -> str:
    return f"{uid}-secret"


def user_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"


def group_dn(name: str) -> str:
    return f"cn={name},{GROUPS}"


class SlapdUnavailable(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hash_password(password: str) -> str:
    out = subprocess.run(["slappasswd", "-h", "{SSHA}", "-s", password], check=True, capture_output=True,
                         text=True, timeout=30)
    return out.stdout.strip()


def directory_ldif() -> str:
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example University\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
    ]
    for uid, (number, mail, department) in USERS.items():
        entries.append(
            f"dn: {user_dn(uid)}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: {uid}\n"
            f"cn: {uid.title()} Example\nsn: Example\nmail: {mail}\ndepartmentNumber: {department}\n"
            f"uidNumber: {number}\ngidNumber: {POSIX_GROUP[1]}\nhomeDirectory: /home/{uid}\n"
            f"userPassword: {_hash_password(password_of(uid))}\n")
    for name, members in GROUP_MEMBERS.items():
        lines = "".join(f"member: {user_dn(m)}\n" for m in members)
        entries.append(f"dn: {group_dn(name)}\nobjectClass: groupOfNames\ncn: {name}\n{lines}")
    name, gid, members = POSIX_GROUP
    lines = "".join(f"memberUid: {m}\n" for m in members)
    entries.append(f"dn: {group_dn(name)}\nobjectClass: posixGroup\ncn: {name}\ngidNumber: {gid}\n{lines}")
    return "\n".join(entries)


def slapd_conf(folder: Path) -> str:
    schemas = "".join(f"include /etc/ldap/schema/{name}.schema\n" for name in SCHEMAS)
    return (
        f"{schemas}"
        f"pidfile {folder / 'slapd.pid'}\n"
        f"argsfile {folder / 'slapd.args'}\n"
        "modulepath /usr/lib/ldap\n"
        "moduleload back_mdb\n"
        # anyone may bind (simple bind checks userPassword); bound users may read the directory
        "access to attrs=userPassword by anonymous auth by self read by * none\n"
        "access to * by users read by anonymous auth\n"
        "database mdb\n"
        "maxsize 10485760\n"
        f'suffix "{SUFFIX}"\n'
        f'rootdn "{ROOT_DN}"\n'
        "rootpw root-secret\n"
        f"directory {folder / 'db'}\n"
        "index objectClass eq\nindex uid eq\nindex member eq\nindex memberUid eq\n"
    )


@dataclass
class Slapd:
    folder: Path
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}/"

    def start(self) -> None:
        for tool in (SLAPD, "/usr/sbin/slapadd"):
            if not os.path.exists(tool):
                raise SlapdUnavailable(f"{tool} is missing: install Debian's slapd and ldap-utils")
        if shutil.which("slappasswd") is None:
            raise SlapdUnavailable("slappasswd is missing: install Debian's slapd")
        (self.folder / "db").mkdir(parents=True, exist_ok=True)
        conf = self.folder / "slapd.conf"
        conf.write_text(slapd_conf(self.folder))
        ldif = self.folder / "directory.ldif"
        ldif.write_text(directory_ldif())
        loaded = subprocess.run(["/usr/sbin/slapadd", "-f", str(conf), "-l", str(ldif)], capture_output=True,
                                text=True, timeout=60)
        if loaded.returncode != 0:
            raise SlapdUnavailable(f"slapadd failed ({loaded.returncode}): {loaded.stderr.strip()[-2000:]}")
        self.port = _free_port()
        log = open(self.folder / "slapd.log", "wb")
        # -d: stay in the foreground (so the pid is ours to stop); 'stats' logs binds and searches
        self.process = subprocess.Popen([SLAPD, "-h", self.url, "-f", str(conf), "-d", "stats"],
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        for _ in range(START_ATTEMPTS):
            if self.process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SlapdUnavailable(f"slapd did not start on {self.url}: {self.log_tail()}")

    def log_tail(self) -> str:
        path = self.folder / "slapd.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
