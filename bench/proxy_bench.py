"""Proxy benchmark: the real gateway against configurable-http-proxy 5 and the backend itself.

One command, one table::

    python bench/proxy_bench.py [--duration 5] [--rounds 3] [--loops uvloop,asyncio] [--no-jupyter]

Set-up (as the issue prescribes): every server process pinned to CPU 0 with ``taskset``, every
load generator (``wrk`` from Debian, the websocket client) to CPU 1.

* The gateway is the real thing: ``python -m gateway -f <config>`` (bench/gatewayrun.py), a user
  ``bench`` whose server is ``bench/fast_backend.py`` started by the gateway's own spawner
  (``Spawner.cmd``), and the user's token on every request, so identity resolution, the scope
  check, route lookup, metrics and the access log all run as in production. ``--loops`` runs one
  gateway per event loop (uvloop, the CLI's default when installed, and plain asyncio).
* "direct" is that same backend process reached without a proxy.
* CHP 5 is installed from the npm registry into a scratch folder outside the repository
  (``$TMPDIR/gateway-bench-chp``) on first use, routed to the same backend.
* Unless ``--no-jupyter``: a second gateway whose user runs a real jupyter-server; wrk on
  ``GET /user/jbench/api/status`` through the gateway and directly (with the server's token).

Measured, each bounded by ``--duration`` seconds per run:

* small requests: ``wrk -c50``, requests/s and p99 latency;
* 16 MiB downloads: ``wrk -c4``, MiB/s;
* websocket echo round trips/s over 20 connections (``bench/ws_echo_client.py``);
* CPU time of the server process per small request and per websocket round trip;
* RSS of the proxy process idle and while 1,000 websockets are open.

Throughput runs alternate between the targets for ``--rounds`` rounds and the median is
reported: on a shared machine single runs are noisy.
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
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
CHP_API_TOKEN = "bench-chp-api-token"  # CHP's own route API, not a proxied credential
STREAM_BYTES = 16 * 1024 * 1024
SERVER_CPU, LOAD_CPU = "0", "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


sys.path.insert(0, str(HERE))
from gatewayrun import RunningGateway, cpu_seconds, rss_mib  # noqa: E402


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
        env={"CONFIGPROXY_AUTH_TOKEN": CHP_API_TOKEN},
        ready_line=False,
    )
    body = json.dumps({"target": f"http://127.0.0.1:{backend_port}"}).encode()
    for _ in range(100):  # bounded wait for the API
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{api_port}/api/routes/user/bench", data=body,
                                         headers={"Authorization": f"token {CHP_API_TOKEN}"}, method="POST")
            urllib.request.urlopen(req, timeout=2).read()
            return chp, port
        except OSError:
            time.sleep(0.1)
    chp.stop()
    raise SystemExit("CHP did not start")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def wrk(url: str, conns: int, duration: float, token: str) -> dict:
    args = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{max(1, round(duration))}s", "--latency", url]
    if token:
        args[5:5] = ["-H", f"Authorization: token {token}"]
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


def ws_client(mode: str, url: str, conns: int, seconds: float, token: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["taskset", "-c", LOAD_CPU, PY, str(HERE / "ws_echo_client.py"), mode, url, str(conns), str(seconds),
         token],
        stdout=subprocess.PIPE, text=True, preexec_fn=_raise_fd_limit,
    )


def ws_echo(url: str, duration: float, token: str) -> float:
    proc = ws_client("echo", url, 20, duration, token)
    out, _ = proc.communicate(timeout=duration + 120)
    return float(out.strip().splitlines()[-1])


def rss_with_open_websockets(pid: int, url: str, token: str, n: int = 1000) -> float:
    proc = ws_client("hold", url, n, 5, token)
    try:
        line = proc.stdout.readline()  # "open N" once all are open
        if not line.startswith(f"open {n}"):
            return float("nan")
        time.sleep(0.5)
        return rss_mib(pid)
    finally:
        proc.wait(timeout=120)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


@dataclass
class Target:
    """One thing wrk drives: its server process (for CPU and RSS), its base URL, the token it needs."""

    name: str
    pid: int
    base: str
    token: str


def fmt_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in [header] + rows)


def measure(targets: list[Target], rounds: int, d: float) -> dict[str, dict[str, float]]:
    """Medians of small requests, streaming and websocket echo, alternating targets each round."""
    for t in targets:  # warm-up (V8's JIT, pools, caches), not measured
        print(f"warm-up: {t.name}", file=sys.stderr)
        wrk(t.base + "x", 50, 2, t.token)
        ws_echo(t.base + "ws", 1, t.token)
    results: dict[str, dict[str, list[float]]] = {t.name: {} for t in targets}
    for r in range(rounds):
        order = targets[r % len(targets):] + targets[: r % len(targets)]
        for t in order:
            print(f"round {r + 1}/{rounds}: {t.name}", file=sys.stderr)
            cpu0 = cpu_seconds(t.pid)
            small = wrk(t.base + "x", 50, d, t.token)
            cpu1 = cpu_seconds(t.pid)
            big = wrk(t.base + f"stream/{STREAM_BYTES}", 4, d, t.token)
            cpu2 = cpu_seconds(t.pid)
            echo = ws_echo(t.base + "ws", d, t.token)
            cpu3 = cpu_seconds(t.pid)
            # CPU cost per unit of work: robust against other load on the machine
            values = {"rps": small["rps"], "p99": small["p99"], "mib_s": big["mib_s"], "ws": echo,
                      "cpu_req": (cpu1 - cpu0) * 1e6 / max(1.0, small["rps"] * round(d)),
                      "cpu_mib": (cpu2 - cpu1) * 1e3 / max(1.0, big["mib_s"] * round(d)),
                      "cpu_rt": (cpu3 - cpu2) * 1e6 / max(1.0, echo * d)}
            for key, value in values.items():
                results[t.name].setdefault(key, []).append(value)
    medians = {n: {k: median(v) for k, v in res.items()} for n, res in results.items()}
    for m in medians.values():
        # what one core could serve if the proxy had it to itself: robust against other load
        m["per_cpu_s"] = 1e6 / m["cpu_req"] if m["cpu_req"] else float("nan")
    return medians


def measure_jupyter(gw: RunningGateway, rounds: int, d: float) -> dict[str, dict[str, float]]:
    """GET api/status of a real jupyter-server: through the gateway, and directly."""
    user = gw.users[0]
    backend = gw.backends[user]
    path = f"{backend.prefix}api/status"
    targets = {"gateway": (gw.url + path, gw.tokens[user], gw.pid),
               "direct": (f"http://127.0.0.1:{backend.port}{path}", backend.secret, backend.pid)}
    for name, (url, token, _) in targets.items():
        print(f"warm-up: jupyter-server {name}", file=sys.stderr)
        wrk(url, 10, 2, token)
    results: dict[str, dict[str, list[float]]] = {n: {} for n in targets}
    names = list(targets)
    for r in range(rounds):
        for name in names[r % 2:] + names[: r % 2]:
            print(f"round {r + 1}/{rounds}: jupyter-server {name}", file=sys.stderr)
            url, token, _ = targets[name]
            gw0, be0 = cpu_seconds(gw.pid), cpu_seconds(backend.pid)
            res = wrk(url, 10, d, token)
            gw_cpu, be_cpu = cpu_seconds(gw.pid) - gw0, cpu_seconds(backend.pid) - be0
            cpu = gw_cpu + be_cpu  # the gateway idles when direct
            requests = res["rps"] * round(d)
            # where the CPU goes: the gateway's own share, and jupyter-server's (which grows behind a proxy)
            results[name].setdefault("gw_us", []).append(gw_cpu / requests * 1e6)
            results[name].setdefault("be_us", []).append(be_cpu / requests * 1e6)
            results[name].setdefault("rps", []).append(res["rps"])
            results[name].setdefault("p99", []).append(res["p99"])
            # requests per CPU-second of jupyter-server (+ gateway): what one free core would serve
            results[name].setdefault("per_cpu_s", []).append(res["rps"] * round(d) / max(cpu, 1e-3))
    return {n: {k: median(v) for k, v in res.items()} for n, res in results.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per throughput metric")
    ap.add_argument("--loops", default="uvloop,asyncio",
                    help="event loops to run a gateway on (comma-separated: uvloop, asyncio)")
    ap.add_argument("--no-jupyter", action="store_true", help="skip the jupyter-server comparison")
    args = ap.parse_args()
    for tool in ("wrk", "taskset", "node", "npm"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (wrk: apt-get install -y wrk)")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two CPUs")
    loops = [x.strip() for x in args.loops.split(",") if x.strip()]
    if "uvloop" in loops and importlib.util.find_spec("uvloop") is None:
        print("uvloop is not installed: skipping its gateway", file=sys.stderr)
        loops.remove("uvloop")

    load_before = f"{os.getloadavg()[0]:.2f}"
    chp_script = ensure_chp()
    scratch = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    gateways: list[RunningGateway] = []
    chp: Server | None = None
    try:
        targets: list[Target] = []
        gw_names = []
        for loop in loops:
            gw = RunningGateway(scratch / loop, ["bench"], spawner_cmd=[PY, str(HERE / "fast_backend.py")],
                                cpu=SERVER_CPU, uvloop=loop == "uvloop")
            gateways.append(gw)
            gw.start()
            name = "gateway" if len(loops) == 1 else f"gateway ({loop})"
            gw_names.append(name)
            targets.append(Target(name, gw.pid, gw.user_url("bench"), gw.tokens["bench"]))
        backend = gateways[0].backends["bench"]
        chp, chp_port = start_chp(chp_script, backend.port)
        targets[:0] = [Target("direct", backend.pid, f"http://127.0.0.1:{backend.port}/user/bench/", ""),
                       Target("CHP 5", chp.pid, f"http://127.0.0.1:{chp_port}/user/bench/", "")]
        rss_idle = {t.name: rss_mib(t.pid) for t in targets}
        med = measure(targets, args.rounds, args.duration)
        rss_ws = {}
        for t in targets[1:]:
            print(f"1,000 websockets: {t.name}", file=sys.stderr)
            rss_ws[t.name] = rss_with_open_websockets(t.pid, t.base + "ws", t.token)
        jupyter = None
        if not args.no_jupyter:
            jgw = RunningGateway(scratch / "jupyter", ["jbench"], cpu=SERVER_CPU, uvloop=loops[0] == "uvloop")
            gateways.append(jgw)
            jgw.start()
            jupyter = measure_jupyter(jgw, args.rounds, args.duration)
    finally:
        if chp is not None:
            chp.stop()
        for gw in reversed(gateways):
            gw.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    names = [t.name for t in targets]
    rows_spec = [
        ("small requests/s (c=50, token checked)", "rps", "{:.0f}", "≥ 2.0× CHP"),
        ("small p99 ms (c=50)", "p99", "{:.2f}", "≤ 5 ms"),
        ("16 MiB streaming MiB/s (c=4)", "mib_s", "{:.0f}", "≥ 2.5× CHP"),
        ("ws echo round trips/s (c=20)", "ws", "{:.0f}", "≥ 1.5× CHP"),
        ("CPU µs per small request", "cpu_req", "{:.1f}", ""),
        ("small requests per CPU-second", "per_cpu_s", "{:.0f}", "(load-independent)"),
        ("CPU ms per streamed MiB", "cpu_mib", "{:.2f}", ""),
        ("CPU µs per ws round trip", "cpu_rt", "{:.1f}", ""),
    ]
    header = ["metric"] + names + [f"{n}/CHP" for n in gw_names] + ["target"]
    rows = []
    for label, key, fmt, target in rows_spec:
        line = [label] + [fmt.format(med[n][key]) for n in names]
        line += [f"{med[n][key] / med['CHP 5'][key]:.2f}×" if key in ("rps", "mib_s", "ws", "per_cpu_s") else "" for n in gw_names]
        rows.append(line + [target])
    blank = [""] * len(gw_names)
    rows.append(["RSS idle MiB"] + [f"{rss_idle[n]:.0f}" for n in names] + blank + [""])
    rows.append(["RSS with 1,000 websockets MiB", "-"] + [f"{rss_ws[n]:.0f}" for n in names[1:]] + blank
                + ["≤ 150 MiB"])
    print(f"\nproxy benchmark: servers on CPU {SERVER_CPU}, load on CPU {LOAD_CPU}, {args.rounds} rounds x "
          f"{args.duration:g} s, medians; load average before {load_before}, after {os.getloadavg()[0]:.2f}")
    print(fmt_table(header, rows))
    if jupyter is not None:
        g, d = jupyter["gateway"], jupyter["direct"]
        print("\njupyter-server GET /user/<name>/api/status (wrk -c10):")
        print(fmt_table(["", "direct", "through gateway", "gateway/direct", "target"], [
            ["requests/s", f"{d['rps']:.0f}", f"{g['rps']:.0f}", f"{g['rps'] / d['rps']:.2f}", "≥ 0.90"],
            ["p99 ms", f"{d['p99']:.2f}", f"{g['p99']:.2f}", "", ""],
            ["requests per CPU-second", f"{d['per_cpu_s']:.0f}", f"{g['per_cpu_s']:.0f}",
             f"{g['per_cpu_s'] / d['per_cpu_s']:.2f}", "(load-independent)"],
            ["gateway CPU µs per request", "-", f"{g['gw_us']:.0f}", "", ""],
            ["jupyter-server CPU µs per request", f"{d['be_us']:.0f}", f"{g['be_us']:.0f}", "", ""],
        ]))


if __name__ == "__main__":
    main()
