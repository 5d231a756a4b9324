"""Local process helpers for the process spawner: identity, signals, ports, log files (Linux /proc).

Vocabulary:
- start time: field 22 of /proc/<pid>/stat, in clock ticks since boot. With the boot id it names
  one process for good, so a pid the kernel has handed to another process is never taken for ours.
- identity: (pid, start time, boot id), what a spawner persists to find its server again.
- group: the process group a server leads. Servers run in their own session, so pgid == sid == pid.
- remnants: members of a group that outlive its leader (children that ignored SIGINT/SIGTERM).
- listener: the socket in LISTEN state that answers connections to 127.0.0.1:<port>.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

LOOPBACK = "127.0.0.1"


# ---- identity ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat we use."""

    pid: int
    state: str  # R, S, D, T, Z (zombie), X (dead) ...
    ppid: int
    pgrp: int
    session: int
    start_time: int

    @property
    def exited(self) -> bool:
        return self.state in ("Z", "X")


def read_stat(pid: int) -> ProcStat | None:
    """The process's stat line, or None when no such process exists (or it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may hold spaces and parentheses: the fields that follow start after the last ')'
    fields = raw[raw.rindex(b")") + 2:].split()
    return ProcStat(pid=pid, state=fields[0].decode(), ppid=int(fields[1]), pgrp=int(fields[2]),
                    session=int(fields[3]), start_time=int(fields[19]))


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def same_process(pid: int, start_time: int, boot: str) -> ProcStat | None:
    """The stat of `pid` if it is still the process that had `start_time` in boot `boot`, else None.

    A zombie still counts as the same process (it has exited but holds its pid).
    """
    if not pid or (boot and boot != boot_id()):
        return None
    stat = read_stat(pid)
    if stat is None or stat.start_time != start_time:
        return None
    return stat


def is_running(pid: int, start_time: int, boot: str) -> bool:
    stat = same_process(pid, start_time, boot)
    return stat is not None and not stat.exited


# ---- signals ----------------------------------------------------------------------------------

def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to the whole group; False when the group no longer exists."""
    if pgid <= 1:  # killpg(0) would hit our own group, killpg(1) init's
        raise ValueError(f"refusing to signal process group {pgid}")
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def kill_remnants(pgid: int, start_time: int, boot: str) -> bool:
    """SIGKILL what is left of the group of a leader that has exited.

    A group id is the pid of the process that created the group. While any member lives the kernel
    does not hand that pid out again; once none does, the pid may lead a stranger's new group. So:
    skip when a different process now holds the pid; otherwise the group, if any, is still ours.
    """
    if pgid <= 1 or (boot and boot != boot_id()):
        return False
    holder = read_stat(pgid)
    if holder is not None and holder.start_time != start_time:
        return False
    return signal_group(pgid, signal.SIGKILL)


# ---- ports ------------------------------------------------------------------------------------

# Ports handed out but maybe not yet bound by their server. Process-wide on purpose: two spawners
# starting at once must not both get the port the kernel gave out and took back in between.
_RESERVED_PORTS: set[int] = set()


def reserve_port() -> int:
    """A free loopback port (bind to port 0, read it, release it), not reserved by another start."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
        if port not in _RESERVED_PORTS:
            _RESERVED_PORTS.add(port)
            return port
    raise OSError("no free port found")


def release_port(port: int) -> None:
    _RESERVED_PORTS.discard(port)


# addresses whose listener answers connections to 127.0.0.1
_LOOPBACK_ANSWERING = {
    socket.AF_INET: {b"\x7f\x00\x00\x01", b"\x00\x00\x00\x00"},  # 127.0.0.1, 0.0.0.0
    socket.AF_INET6: {bytes(16), bytes(10) + b"\xff\xff\x7f\x00\x00\x01"},  # ::, ::ffff:127.0.0.1
}
_NETLINK_SOCK_DIAG, _SOCK_DIAG_BY_FAMILY, _NLMSG_ERROR, _NLMSG_DONE = 4, 20, 2, 3
_TCP_LISTEN_ONLY = 1 << 10  # TCPF_LISTEN: the kernel then walks only its (small) listening table


def _listener_inodes_netlink(port: int) -> set[int]:
    """Inodes of loopback-answering TCP listeners on `port`, asked of the kernel's sock_diag."""
    found: set[int] = set()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(1.0)
        for family in (socket.AF_INET, socket.AF_INET6):
            request = struct.pack("=BBBBI48x", family, socket.IPPROTO_TCP, 0, 0, _TCP_LISTEN_ONLY)
            header = struct.pack("=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY, 0x301, family, 0)
            nl.send(header + request)  # flags: NLM_F_REQUEST | NLM_F_DUMP
            for _ in range(10_000):  # bounded: one reply batch per round
                data, done, offset = nl.recv(65536), False, 0
                while offset + 16 <= len(data):
                    length, kind = struct.unpack_from("=IH", data, offset)
                    if kind == _NLMSG_ERROR:
                        raise OSError("sock_diag refused the request")
                    if kind == _NLMSG_DONE or length < 16:
                        done = True
                        break
                    msg = offset + 16  # struct inet_diag_msg
                    sport = struct.unpack_from("!H", data, msg + 4)[0]
                    src = data[msg + 8: msg + 8 + (4 if family == socket.AF_INET else 16)]
                    if sport == port and src in _LOOPBACK_ANSWERING[family]:
                        found.add(struct.unpack_from("=I", data, msg + 68)[0])
                    offset += (length + 3) & ~3
                if done:
                    break
    return found


def _listener_inodes_proc(port: int) -> set[int] | None:
    """The same from /proc/net/tcp{,6} (slower: the kernel walks every connection to print it)."""
    hexes = {"0100007F", "00000000", "00000000000000000000000000000000", "0000000000000000FFFF00000100007F"}
    found: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        except OSError:
            return None
        for line in lines:
            cols = line.split()
            addr, _, hexport = cols[1].partition(":")
            if cols[3] == "0A" and int(hexport, 16) == port and addr in hexes:
                found.add(int(cols[9]))
    return found


def _holds_socket(pid: int, wanted: set[str]) -> bool | None:
    """Whether `pid` has one of the `wanted` socket links open; None when we may not look."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError):
        return False
    except PermissionError:
        return None
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                return True
        except OSError:
            continue
    return False


def listener_in_session(port: int, sid: int) -> bool | None:
    """Whether the listener on 127.0.0.1:`port` belongs to a process of session `sid`.

    None when we cannot tell (hidden processes, no sock_diag and no /proc/net): callers then trust
    the port. This guards the window between releasing a picked port and the server binding it.
    """
    try:
        inodes: set[int] | None = _listener_inodes_netlink(port)
    except OSError:
        inodes = _listener_inodes_proc(port)
    if not inodes:
        return None if inodes is None else False
    wanted = {f"socket:[{inode}]" for inode in inodes}
    held = _holds_socket(sid, wanted)  # the session leader itself is the usual listener
    if held:
        return True
    blind = held is None
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == sid:
            continue
        stat = read_stat(int(entry.name))
        if stat is None or stat.session != sid:
            continue
        held = _holds_socket(stat.pid, wanted)
        if held:
            return True
        blind = blind or held is None
    return None if blind else False


# ---- files ------------------------------------------------------------------------------------

def path_component(name: str) -> str:
    """A user or server name as one safe file name: '/', NUL and the like %-escaped, never '.' or '..'."""
    if not name:
        raise ValueError("empty name")
    safe = quote(name, safe="@+")
    if set(safe) == {"."}:
        safe = safe.replace(".", "%2E")
    return safe


def make_private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def open_log(path: Path) -> int:
    """Open a fresh log for writing (mode 0600); the previous one is kept as '<name>.1'."""
    make_private_dir(path.parent)
    if path.exists():
        os.replace(path, path.with_name(path.name + ".1"))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)  # in case a umask or an old file made it wider
    return fd


def read_tail(path: str | Path, lines: int = 20, max_bytes: int = 4096) -> str:
    """The last `lines` lines (at most `max_bytes`) of a log, '' when there is none."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    if len(data) == max_bytes and size > max_bytes:
        text = text.split("\n", 1)[-1]  # drop the partial first line
    return "\n".join(text.rstrip("\n").split("\n")[-lines:])
