"""Proxy benchmark: gateway's forwarder against configurable-http-proxy 5.

One command, one table of ratios::

    python bench/proxy_bench.py [--duration 5] [--rounds 3]

Set-up (as the issue prescribes): every server process (fast echo backend,
CHP, gateway) pinned to CPU 0 with ``taskset``, every load generator to CPU 1.
The backend is ``bench/fast_backend.py``; it is measured directly too. The
gateway is ``bench/bench_gateway.py``: strictness checks, canonical path,
route lookup and a token compared on every request, then ProxyForwarder.
CHP is installed from the npm registry into a scratch folder outside the
repository (``$TMPDIR/gateway-bench-chp``) on first use.

Measured, each bounded by ``--duration`` seconds per run:

* small requests: ``wrk -c50``, requests/s and p99 latency;
* 16 MiB downloads: ``wrk -c4``, MiB/s;
* websocket echo round trips/s over 20 connections (``bench/ws_echo_client.py``);
* RSS of the proxy process idle and while 1,000 websockets are open.

Throughput runs alternate between the proxies for ``--rounds`` rounds and the
median is reported: on a shared machine single runs are noisy.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
TOKEN = "bench-token"
STREAM_BYTES = 16 * 1024 * 1024
SERVER_CPU, LOAD_CPU = "0", "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A pinned server process, killed by pid at the end."""

    def __init__(self, name: str, args: list[str], env: dict | None = None, ready_line: bool = True) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *args],
            stdout=subprocess.PIPE if ready_line else subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), **(env or {})},
            text=True,
            preexec_fn=_raise_fd_limit,
        )
        if ready_line:
            line = self.proc.stdout.readline()
            if line.strip() != "ready":
                self.stop()
                raise SystemExit(f"{name} did not start")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mib(self) -> float:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (all threads)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def _raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def ensure_chp() -> Path:
    folder = Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / "gateway-bench-chp"
    script = folder / "node_modules" / "configurable-http-proxy" / "bin" / "configurable-http-proxy"
    if not script.exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(folder), "configurable-http-proxy@5"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return script


def start_chp(script: Path, backend_port: int) -> tuple[Server, int]:
    port, api_port = free_port(), free_port()
    chp = Server(
        "chp",
        ["node", str(script), "--ip", "127.0.0.1", "--port", str(port), "--api-ip", "127.0.0.1",
         "--api-port", str(api_port), "--log-level", "warn"],
        env={"CONFIGPROXY_AUTH_TOKEN": TOKEN},
        ready_line=False,
    )
    body = json.dumps({"target": f"http://127.0.0.1:{backend_port}"}).encode()
    for _ in range(100):  # bounded wait for the API
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{api_port}/api/routes/user/bench", data=body,
                                         headers={"Authorization": f"token {TOKEN}"}, method="POST")
            urllib.request.urlopen(req, timeout=2).read()
            return chp, port
        except OSError:
            time.sleep(0.1)
    chp.stop()
    raise SystemExit("CHP did not start")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def wrk(url: str, conns: int, duration: float, auth: bool) -> dict:
    args = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{max(1, round(duration))}s", "--latency", url]
    if auth:
        args[5:5] = ["-H", f"Authorization: token {TOKEN}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"\s99%\s+([\d.]+)(us|ms|s|m)\b", out)
    p99 = float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")
    t = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", out)
    mib_s = float(t.group(1)) * _BYTES[t.group(2)] / 1024**2 if t else float("nan")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"  warning: {errors.group(1)} non-2xx answers from {url}", file=sys.stderr)
    return {"rps": rps, "p99": p99, "mib_s": mib_s}


def ws_client(mode: str, url: str, conns: int, seconds: float, auth: bool) -> subprocess.Popen:
    return subprocess.Popen(
        ["taskset", "-c", LOAD_CPU, PY, str(HERE / "ws_echo_client.py"), mode, url, str(conns), str(seconds),
         TOKEN if auth else ""],
        stdout=subprocess.PIPE, text=True, preexec_fn=_raise_fd_limit,
    )


def ws_echo(url: str, duration: float, auth: bool) -> float:
    proc = ws_client("echo", url, 20, duration, auth)
    out, _ = proc.communicate(timeout=duration + 120)
    return float(out.strip().splitlines()[-1])


def rss_with_open_websockets(server: Server, url: str, auth: bool, n: int = 1000) -> float:
    proc = ws_client("hold", url, n, 5, auth)
    try:
        line = proc.stdout.readline()  # "open N" once all are open
        if not line.startswith(f"open {n}"):
            return float("nan")
        time.sleep(0.5)
        return server.rss_mib()
    finally:
        proc.wait(timeout=120)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per throughput metric")
    ap.add_argument("--no-uvloop", action="store_true", help="skip the uvloop row even if uvloop is installed")
    args = ap.parse_args()
    for tool in ("wrk", "taskset", "node", "npm"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (wrk: apt-get install -y wrk)")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two CPUs")

    load_before = f"{os.getloadavg()[0]:.2f}"
    chp_script = ensure_chp()
    backend_port = free_port()
    servers: list[Server] = []
    try:
        backend = Server("backend", [PY, str(HERE / "fast_backend.py"), str(backend_port)])
        servers.append(backend)
        chp, chp_port = start_chp(chp_script, backend_port)
        servers.append(chp)
        targets = {"direct": (backend, backend_port, False), "CHP 5": (chp, chp_port, False)}
        gw_port = free_port()
        gw = Server("gateway", [PY, str(HERE / "bench_gateway.py"), str(gw_port), str(backend_port), TOKEN])
        servers.append(gw)
        targets["gateway"] = (gw, gw_port, True)
        if not args.no_uvloop and importlib.util.find_spec("uvloop"):
            uv_port = free_port()
            uv = Server("gateway+uvloop", [PY, str(HERE / "bench_gateway.py"), str(uv_port), str(backend_port), TOKEN],
                        env={"GATEWAY_BENCH_UVLOOP": "1"})
            servers.append(uv)
            targets["gateway+uvloop"] = (uv, uv_port, True)
        names = list(targets)
        url = {n: f"http://127.0.0.1:{p}/user/bench/" for n, (_, p, _) in targets.items()}
        auth = {n: a for n, (_, _, a) in targets.items()}

        rss_idle = {n: s.rss_mib() for n, (s, _, _) in targets.items()}
        for n in names:  # warm-up (V8's JIT, pools), not measured
            print(f"warm-up: {n}", file=sys.stderr)
            wrk(url[n] + "x", 50, 2, auth[n])
            ws_echo(url[n] + "ws", 1, auth[n])
        results: dict[str, dict[str, list[float]]] = {n: {} for n in names}
        d = args.duration
        for r in range(args.rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for n in order:
                print(f"round {r + 1}/{args.rounds}: {n}", file=sys.stderr)
                server = targets[n][0]
                cpu0 = server.cpu_seconds()
                small = wrk(url[n] + "x", 50, d, auth[n])
                cpu1 = server.cpu_seconds()
                big = wrk(url[n] + f"stream/{STREAM_BYTES}", 4, d, auth[n])
                cpu2 = server.cpu_seconds()
                echo = ws_echo(url[n] + "ws", d, auth[n])
                cpu3 = server.cpu_seconds()
                # CPU cost per unit of work: robust against other load on the machine
                cpu_req = (cpu1 - cpu0) * 1e6 / max(1.0, small["rps"] * round(d))
                cpu_rt = (cpu3 - cpu2) * 1e6 / max(1.0, echo * d)
                for key, value in (("rps", small["rps"]), ("p99", small["p99"]), ("mib_s", big["mib_s"]), ("ws", echo),
                                   ("cpu_req", cpu_req), ("cpu_rt", cpu_rt)):
                    results[n].setdefault(key, []).append(value)
        rss_ws = {}
        for n in names:
            if n == "direct":
                continue
            print(f"1,000 websockets: {n}", file=sys.stderr)
            rss_ws[n] = rss_with_open_websockets(targets[n][0], url[n] + "ws", auth[n])
    finally:
        for s in reversed(servers):
            s.stop()

    med = {n: {k: median(v) for k, v in results[n].items()} for n in names}
    proxies = [n for n in names if n != "direct"]
    rows = [
        ("small requests/s (c=50)", "rps", "{:.0f}", "≥ 2.0× CHP"),
        ("small p99 ms (c=50)", "p99", "{:.2f}", "≤ 5 ms"),
        ("16 MiB streaming MiB/s (c=4)", "mib_s", "{:.0f}", "≥ 2.5× CHP"),
        ("ws echo round trips/s (c=20)", "ws", "{:.0f}", "≥ 1.5× CHP"),
        ("CPU µs per small request", "cpu_req", "{:.1f}", "(lower is better)"),
        ("CPU µs per ws round trip", "cpu_rt", "{:.1f}", "(lower is better)"),
    ]
    header = ["metric"] + names + [f"{n}/CHP" for n in proxies if n != "CHP 5"] + ["target"]
    table = []
    for label, key, fmt, target in rows:
        line = [label] + [fmt.format(med[n][key]) for n in names]
        for n in proxies:
            if n != "CHP 5":
                line.append(f"{med[n][key] / med['CHP 5'][key]:.2f}×")
        table.append(line + [target])
    table.append(["RSS idle MiB"] + [f"{rss_idle[n]:.0f}" for n in names] + [""] * (len(proxies) - 1) + [""])
    table.append(["RSS 1,000 websockets MiB", "-"] + [f"{rss_ws[n]:.0f}" for n in proxies] + [""] * (len(proxies) - 1) + ["≤ 150 MiB"])
    widths = [max(len(str(row[i])) for row in [header] + table) for i in range(len(header))]
    print(f"\nproxy benchmark: servers on CPU {SERVER_CPU}, load on CPU {LOAD_CPU}, "
          f"{args.rounds} rounds x {args.duration:g} s, medians; load average before {load_before}, after {os.getloadavg()[0]:.2f}")
    for row in [header] + table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


if __name__ == "__main__":
    main()
