"""A single-node Slurm cluster from Debian's packages, for tests: munged, slurmctld and slurmd on this machine.

Everything lives in one temporary directory (munge key and socket, slurm.conf, state, spool, logs); the daemons
run in the foreground as children of the test process and are stopped by pid. Ports are free loopback ports,
so a system Slurm (if the packages started one) is left alone. Client commands find the cluster through
``SLURM_CONF`` (see ``SlurmCluster.env``); the directory is world-readable so jobs submitted as another Unix
user (``sudo -u``) reach the munge socket and the config.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
START_TIMEOUT = 60.0  # seconds for the node to show up idle; a bound, not a performance claim


class ClusterError(RuntimeError):
    """The cluster could not start; the message carries the daemons' logs."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing_binaries() -> list[str]:
    wanted = ("munged", "mungekey", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scancel")
    return [name for name in wanted if shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None]


def _which(name: str) -> str:
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if found is None:
        raise ClusterError(f"{name} not found (Debian packages slurm-wlm and munge)")
    return found


def node_hardware() -> str:
    """The node line's hardware part as slurmd itself detects it (``slurmd -C``), so the node never drains
    for a CPU or memory mismatch."""
    out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, timeout=30, check=True).stdout
    first = out.splitlines()[0].split()
    # "NodeName=vm CPUs=2 Boards=1 ... RealMemory=24105": keep everything but the name
    return " ".join(part for part in first if not part.startswith("NodeName="))


def node_name() -> str:
    # slurmd takes its node name from the short hostname
    return socket.gethostname().split(".")[0]


class SlurmCluster:
    def __init__(self, base: Path | None = None, cluster_name: str = "gwtest", partition: str = "debug"):
        self.base = Path(base or tempfile.mkdtemp(prefix="gw-slurm-"))
        self.cluster_name = cluster_name
        self.partition = partition
        self.node = node_name()
        self.ctld_port = _free_port()
        self.slurmd_port = _free_port()
        self.procs: dict[str, subprocess.Popen] = {}

    # -- paths ------------------------------------------------------------------------------------------
    @property
    def conf_path(self) -> Path:
        return self.base / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.base / "run" / "munge.socket"

    def log_path(self, daemon: str) -> Path:
        return self.base / "log" / f"{daemon}.log"

    @property
    def env(self) -> dict[str, str]:
        """Environment for client commands (sbatch, squeue, scancel, sinfo) against this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf_path)}

    # -- life cycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self._prepare_dirs()
            self._start_munge()
            self._write_conf()
            self._spawn("slurmctld", [_which("slurmctld"), "-D", "-f", str(self.conf_path)])
            self._spawn("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf_path), "-N", self.node])
            self._wait_idle()
        except Exception as exc:
            self.stop()
            raise ClusterError(f"Slurm cluster did not start: {exc}\n{self.logs()}") from exc

    def _prepare_dirs(self) -> None:
        # munged checks permissions: its key dir private, the socket's dir reachable by every user
        os.chmod(self.base, 0o755)
        for sub, mode in (("munge", 0o700), ("run", 0o755), ("log", 0o755), ("state", 0o700), ("spool", 0o755)):
            (self.base / sub).mkdir(exist_ok=True)
            os.chmod(self.base / sub, mode)

    def _start_munge(self) -> None:
        key = self.base / "munge" / "munge.key"
        subprocess.run([_which("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True,
                       timeout=30)
        self._spawn("munged", [
            _which("munged"), "--foreground", f"--key-file={key}", f"--socket={self.munge_socket}",
            f"--pid-file={self.base / 'run' / 'munged.pid'}", f"--seed-file={self.base / 'munge' / 'seed'}",
            f"--log-file={self.log_path('munged')}",
        ])
        self._wait_for(lambda: self.munge_socket.exists(), "the munge socket")

    def _write_conf(self) -> None:
        b = self.base
        self.conf_path.write_text(f"""\
# generated by tests/spawn/slurm_cluster.py: one node, no accounting, everything under {b}
ClusterName={self.cluster_name}
SlurmctldHost=localhost
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={b / 'state'}
SlurmdSpoolDir={b / 'spool'}
SlurmctldPidFile={b / 'run' / 'slurmctld.pid'}
SlurmdPidFile={b / 'run' / 'slurmd.pid'}
SlurmctldLogFile={self.log_path('slurmctld')}
SlurmdLogFile={self.log_path('slurmd')}
PlugStackConfig={b / 'plugstack.conf'}
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=30
NodeName={self.node} NodeAddr=127.0.0.1 {node_hardware()} State=UNKNOWN
PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")
        (b / "plugstack.conf").write_text("")  # no SPANK plugins (the system's may name missing ones)
        os.chmod(self.conf_path, 0o644)

    def _spawn(self, daemon: str, argv: list[str]) -> None:
        out = open(self.base / "log" / f"{daemon}.out", "ab")
        try:
            self.procs[daemon] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                  env=self.env, cwd=self.base)
        finally:
            out.close()

    def _wait_for(self, ready, what: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for daemon, proc in self.procs.items():
                if proc.poll() is not None:
                    raise ClusterError(f"{daemon} exited with status {proc.returncode} while waiting for {what}")
            if ready():
                return
            time.sleep(0.2)
        raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")

    def node_state(self) -> str:
        res = self.client("sinfo", "-h", "-N", "-n", self.node, "-o", "%T", check=False)
        return res.stdout.strip() if res.returncode == 0 else ""

    def _wait_idle(self) -> None:
        self._wait_for(lambda: self.node_state() == "idle", f"node {self.node} idle in sinfo")

    def stop(self) -> None:
        """Cancel every job, then stop slurmd, slurmctld and munged (in that order), each by its pid."""
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            self.cancel_all_jobs()
        for daemon in reversed(DAEMONS):
            proc = self.procs.get(daemon)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    # -- client commands ------------------------------------------------------------------------------------
    def client(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([_which(argv[0]), *argv[1:]], capture_output=True, text=True, env=self.env,
                              timeout=timeout, check=check)

    def jobs(self) -> list[dict[str, str]]:
        """Jobs squeue knows about (pending, running, completing): id, state, user, name, node."""
        out = self.client("squeue", "-h", "-o", "%i|%T|%u|%j|%N").stdout
        rows = []
        for line in out.splitlines():
            job_id, state, user, name, node = line.split("|")
            rows.append({"id": job_id, "state": state, "user": user, "name": name, "node": node})
        return rows

    def cancel_all_jobs(self, timeout: float = 30) -> None:
        ids = [job["id"] for job in self.jobs()]
        if ids:
            self.client("scancel", *ids, check=False)
        deadline = time.monotonic() + timeout
        while self.jobs() and time.monotonic() < deadline:
            time.sleep(0.3)

    def logs(self, tail: int = 60) -> str:
        parts = []
        for path in sorted((self.base / "log").glob("*")) if (self.base / "log").exists() else []:
            lines = path.read_text(errors="replace").splitlines()[-tail:]
            parts.append(f"--- {path.name} ---\n" + "\n".join(lines))
        return "\n".join(parts)
