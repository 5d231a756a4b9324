"""ProcessSpawner: each single-user server a local process on 127.0.0.1, in its own session so that a
gateway restart leaves it running; ``spawner_class_for`` names the spawner classes.

The interface and its vocabulary (spec, options, ready, state, progress event) are in ``gateway.spawners.base``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gateway.spawners import probe, procs
from gateway.spawners.base import ServerSpec, Spawner, SpawnerOptions, SpawnError

log = logging.getLogger("gateway.spawner")

READY_POLL_INTERVAL = 0.01  # seconds between cheap TCP connects while waiting for a server to listen
EXIT_CHECK_INTERVAL = 0.02  # seconds between exit checks while an HTTP probe is outstanding
SECRET_VARIABLES = ("JUPYTER_TOKEN", "JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN")
# what servers print when the port was taken between our pick and their bind
_PORT_IN_USE = re.compile(r"address already in use|EADDRINUSE|errno 98|port \d+ is already in use", re.I)


@dataclass(frozen=True)
class _Child:
    popen: subprocess.Popen
    start_time: int


# Servers this gateway process launched, by pid. Process-wide on purpose: a spawner re-created from
# state in the same process still reaps its child (and learns its real exit status) through it.
_CHILDREN: dict[int, _Child] = {}


class _PortTaken(Exception):
    """The port we picked was bound by another process before our server could bind it."""


LAB_URL = "/lab"


def lab_installed() -> bool:
    """JupyterLab in the gateway's environment, where the default command runs: servers then open at
    /lab, as jupyterhub-singleuser does when it finds JupyterLab (jupyter-server alone opens a bare page)."""
    return importlib.util.find_spec("jupyterlab") is not None


def default_server_command() -> str:
    """jupyter-server next to the gateway's Python (same environment), else the one on PATH."""
    beside = Path(sys.executable).parent / "jupyter-server"
    if os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("jupyter-server")
    if found:
        return found
    raise SpawnError("jupyter-server was found neither next to the gateway's Python nor on PATH; "
                     "install it or set c.Spawner.cmd.")


class ProcessSpawner(Spawner):
    """A local process on 127.0.0.1 at a free port, in its own session, logging to a 0600 file.

    Run as the system account of the user's name when the gateway is root, ``switch_user`` is on and
    such an account exists (uid, gid, supplementary groups, HOME), as JupyterHub's
    LocalProcessSpawner does; otherwise as the gateway's own user with a per-user HOME folder.
    """

    def __init__(self, options: SpawnerOptions, spec: ServerSpec, state: Mapping[str, Any] | None = None):
        self._pid = 0
        self._port = 0
        self._url = ""
        self._start_time = 0
        self._boot = ""
        self._log_path = ""
        self._exit_status: int | None = None
        self._last_exit_status: int | None = None  # kept after stop(), for logs and tests
        self._stopping = False
        super().__init__(options, spec, state)

    # ---- state
    @property
    def url(self) -> str:
        return self._url if self._pid else ""

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def port(self) -> int:
        return self._port if self._pid else 0

    @property
    def exit_status(self) -> int | None:
        """How the last server of this spawner ended (negative: killed by that signal), None if unknown."""
        return self._last_exit_status

    @property
    def log_path(self) -> str:
        return self._log_path

    def get_state(self) -> dict[str, Any]:
        if not self._pid:
            return {}
        return {"pid": self._pid, "pgid": self._pid, "port": self._port, "url": self._url,
                "start_time": self._start_time, "boot_id": self._boot, "log_path": self._log_path}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self._pid = int(state.get("pid") or 0)
        self._port = int(state.get("port") or 0)
        self._url = str(state.get("url") or "")
        self._start_time = int(state.get("start_time") or 0)
        self._boot = str(state.get("boot_id") or "")
        self._log_path = str(state.get("log_path") or "")
        self._exit_status = None

    def _clear(self) -> None:
        child = _CHILDREN.get(self._pid)
        if child is not None and child.popen.returncode is not None:
            del _CHILDREN[self._pid]
        self._pid = self._port = self._start_time = 0
        self._url = self._boot = ""
        self._exit_status = None

    # ---- what the process gets
    def _account(self) -> pwd.struct_passwd | None:
        """The system account to run as, or None to run as the gateway's own user."""
        if not self.options.switch_user or os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(self.spec.user)
        except KeyError:
            return None

    def _expand(self, template: str) -> str:
        name = self.spec.user
        if "/" in name or "\0" in name or set(name) <= {"."}:
            raise SpawnError(f"User name {name!r} cannot be used in a path.")
        return template.replace("{username}", name).replace("{servername}", self.spec.server_name)

    def home_dir(self, account: pwd.struct_passwd | None = None) -> Path:
        if account is not None:
            return Path(account.pw_dir)
        if self.options.home_dir_template:
            return Path(self._expand(self.options.home_dir_template)).expanduser().absolute()
        return Path(self.options.data_dir).absolute() / "users" / procs.path_component(self.spec.user)

    def notebook_path(self, home: Path) -> Path:
        if not self.notebook_dir:
            return home
        path = self._expand(self.notebook_dir)
        if path == "~" or path.startswith("~/"):
            path = str(home) + path[1:]
        return home / path  # an absolute path replaces home

    def log_file(self) -> Path:
        folder = Path(self.options.data_dir).absolute() / "logs" / procs.path_component(self.spec.user)
        name = f"server-{procs.path_component(self.spec.server_name)}.log" if self.spec.server_name else "server.log"
        return folder / name

    def get_cmd(self, port: int, as_root: bool = False) -> list[str]:
        """The command line: cmd, the flags a server behind our proxy needs, then Spawner.args."""
        cmd = list(self.cmd) or [default_server_command()]
        flags = [
            f"--ServerApp.ip={procs.LOOPBACK}",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",  # a taken port must fail, not silently move elsewhere
            f"--ServerApp.base_url={self.spec.server_prefix}",
            "--ServerApp.allow_remote_access=True",  # the proxy keeps the public Host header
            "--ServerApp.open_browser=False",
            # With hub_prefix in its tornado settings JupyterLab knows it is behind a hub: it leaves the
            # server's token (our secret) out of its page config, so browsers never see it and use the
            # login cookie and XSRF instead, and it links its Hub Control Panel and Log Out to the hub.
            f"--ServerApp.tornado_settings=hub_prefix={self.spec.hub_url_base or self.spec.base_url + 'hub/'}",
            "--ServerApp.tornado_settings=hub_host=",
            f"--ServerApp.tornado_settings=user={self.spec.user}",
        ]
        default_url = self.default_url or (LAB_URL if not self.cmd and lab_installed() else "")
        if default_url:
            flags.append(f"--ServerApp.default_url={default_url}")
        if as_root:
            flags.append("--allow-root")
        if self.options.debug:
            flags.append("--debug")
        argv = cmd + flags + list(self.args)
        if self.options.shell_cmd:  # JupyterHub's LocalProcessSpawner.shell_cmd: one quoted line for the shell
            return list(self.options.shell_cmd) + [shlex.join(argv)]
        return argv

    def get_env(self, port: int, account: pwd.struct_passwd | None = None, home: Path | None = None) -> dict[str, str]:
        """The environment: env_keep, JupyterHub's variables, USER/HOME/SHELL, config, the secret."""
        spec, options = self.spec, self.options
        home = home if home is not None else self.home_dir(account)
        prefix = spec.server_prefix
        env = {key: os.environ[key] for key in options.env_keep if key in os.environ}
        scopes = json.dumps(spec.access_scopes)
        env.update({
            "JUPYTERHUB_API_URL": spec.hub_api_url,
            "JUPYTERHUB_ACTIVITY_URL": f"{spec.hub_api_url.rstrip('/')}/users/{spec.escaped_user}/activity",
            "JUPYTERHUB_BASE_URL": spec.base_url,
            "JUPYTERHUB_CLIENT_ID": spec.client_id,
            "JUPYTERHUB_USER": spec.user,
            "JUPYTERHUB_SERVER_NAME": spec.server_name,
            "JUPYTERHUB_SERVICE_PREFIX": prefix,
            "JUPYTERHUB_SERVICE_URL": f"http://{procs.LOOPBACK}:{port}{prefix}",
            "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{prefix}oauth_callback",
            "JUPYTERHUB_OAUTH_ACCESS_SCOPES": scopes,
            "JUPYTERHUB_OAUTH_SCOPES": scopes,
            "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES": "[]",
            "JUPYTERHUB_HOST": spec.public_host,
            "JUPYTERHUB_PUBLIC_URL": spec.public_url,
            "JUPYTERHUB_PUBLIC_HUB_URL": spec.public_hub_url,
            "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED": "1" if spec.cookie_host_prefix_enabled else "0",
        })
        if spec.admin_access:
            env["JUPYTERHUB_ADMIN_ACCESS"] = "1"
        if self.notebook_dir:
            env["JUPYTERHUB_ROOT_DIR"] = str(self.notebook_path(home))
        if self.default_url:
            env["JUPYTERHUB_DEFAULT_URL"] = self.default_url
        for name, value in (("MEM_LIMIT", self.mem_limit), ("MEM_GUARANTEE", self.mem_guarantee),
                            ("CPU_LIMIT", self.cpu_limit), ("CPU_GUARANTEE", self.cpu_guarantee)):
            if value:
                env[name] = str(value)
        if options.debug:
            env["JUPYTERHUB_DEBUG"] = "1"
        if options.disable_user_config:
            env["JUPYTERHUB_DISABLE_USER_CONFIG"] = "1"
        env["USER"] = spec.user
        env["HOME"] = str(home)
        shell = account.pw_shell if account else ""
        env["SHELL"] = shell or ("/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh")
        env.update(spec.env_extra)
        for key, value in self.environment.items():
            env[key] = str(value(self)) if callable(value) else str(value)
        # last, so no configuration can replace the secret the proxy will present
        env.update(dict.fromkeys(SECRET_VARIABLES, spec.api_token))
        return env

    # ---- start
    async def start(self) -> str:
        if not self.spec.api_token:
            raise ValueError("ServerSpec.api_token is required: it is the server's secret")
        if self._pid and self._poll() is None:
            raise SpawnError(f"Server at {self.spec.server_prefix} is already running.")
        self._clear()
        self._last_exit_status = None
        self._begin_progress()
        try:
            async with asyncio.timeout(self.options.start_timeout):
                return await self._start_with_retry()
        except TimeoutError:
            tail = self._tail()
            await self.stop(now=True)
            raise SpawnError(f"Server at {self.spec.server_prefix} did not start within "
                             f"{self.options.start_timeout:g} seconds (Spawner.start_timeout).", tail) from None
        except BaseException:
            self._kill_now()  # cancelled, or a bug: never leave a half-started process behind
            raise
        finally:
            self._end_progress()

    async def _start_with_retry(self) -> str:
        for attempt in (1, 2):
            port = procs.reserve_port()
            try:
                self._launch(port)
                if attempt == 1:  # JupyterHub's own event, so the event stream reads the same
                    self._emit({"progress": 50, "message": "Spawning server..."})
                await self._wait_ready(port)
            except _PortTaken as exc:
                await self.stop(now=True)
                if attempt == 2:
                    raise SpawnError(f"Server at {self.spec.server_prefix} found no free port.", str(exc)) from None
                log.warning("port %d was taken before %s could bind it; retrying", port, self.spec.server_prefix)
                continue
            finally:
                procs.release_port(port)
            log.info("server at %s ready on port %d (pid %d)", self.spec.server_prefix, port, self._pid)
            return self._url
        raise AssertionError("unreachable")

    def _launch(self, port: int) -> None:
        account = self._account()
        home = self.home_dir(account)
        cwd = self.notebook_path(home)
        if account is not None and not cwd.is_dir():
            raise SpawnError(f"Folder {cwd} of user {account.pw_name} does not exist.")
        uid = account.pw_uid if account else os.geteuid()
        argv = self.get_cmd(port, as_root=uid == 0)
        env = self.get_env(port, account, home)
        switch: dict[str, Any] = {}
        if account is not None:
            switch = {"user": account.pw_uid, "group": account.pw_gid,
                      "extra_groups": os.getgrouplist(account.pw_name, account.pw_gid)}
        log_path = self.log_file()
        try:
            if account is None:
                procs.make_private_dir(home)
                procs.make_private_dir(cwd)
            fd = procs.open_log(log_path)
        except OSError as exc:
            raise SpawnError(f"Could not prepare the server's folders: {exc}") from None
        try:
            popen = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                                     start_new_session=True, close_fds=True, **switch)
        except OSError as exc:
            what = exc.filename if exc.filename not in (None, argv[0]) else argv[0]
            raise SpawnError(f"Could not run {argv[0]!r}: {exc.strerror or exc}: {what}") from None
        except subprocess.SubprocessError as exc:
            raise SpawnError(f"Could not run {argv[0]!r}: {exc}") from None
        finally:
            os.close(fd)
        stat = procs.read_stat(popen.pid)  # an unreaped child always has one, where /proc is mounted
        start_time = stat.start_time if stat else 0
        _CHILDREN[popen.pid] = _Child(popen, start_time)
        self._pid, self._port, self._start_time = popen.pid, port, start_time
        self._boot, self._log_path, self._exit_status = procs.boot_id(), str(log_path), None
        self._url = f"http://{procs.LOOPBACK}:{port}"
        log.info("started %s for %s (pid %d, port %d, log %s)", argv[0], self.spec.server_prefix,
                 popen.pid, port, log_path)

    async def _wait_ready(self, port: int) -> None:
        """Return once the server answers HTTP; bounded by http_timeout from launch."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.http_timeout
        path = quote(self.spec.server_prefix, safe="/%@~:!$&'()*+,;=") + "api/status"
        while True:
            status = self._poll()
            if status is not None and (self._stopping or not self._pid):
                raise SpawnError(f"Server at {self.spec.server_prefix} was stopped while it was starting.")
            if status is not None:
                tail = self._tail()
                self._clear()
                if _PORT_IN_USE.search(tail):
                    raise _PortTaken(tail)
                raise SpawnError(f"Server at {self.spec.server_prefix} exited with status {status} "
                                 "before it was ready.", tail)
            sock = await probe.connect(port)
            if sock is not None and await probe.answers(sock, port, path, deadline, check_interval=EXIT_CHECK_INTERVAL,
                                                        exited=lambda: self._poll() is not None):
                if procs.listener_in_session(port, self._pid) is False:
                    raise _PortTaken(f"another process listens on port {port}")
                return
            if loop.time() >= deadline:
                tail = self._tail()
                await self.stop(now=True)
                raise SpawnError(f"Server at {self.spec.server_prefix} did not answer within "
                                 f"{self.options.http_timeout:g} seconds (Spawner.http_timeout).", tail)
            await asyncio.sleep(READY_POLL_INTERVAL)

    def _tail(self) -> str:
        if not self._log_path:
            return ""
        tail = procs.read_tail(self._log_path)
        return tail.replace(self.spec.api_token, "[secret]") if self.spec.api_token else tail

    # ---- poll and stop
    async def poll(self) -> int | None:
        return self._poll()

    def _poll(self) -> int | None:
        if not self._pid:
            return 0
        if self._exit_status is not None:
            return self._exit_status
        child = _CHILDREN.get(self._pid)
        if child is not None and child.start_time == self._start_time:
            status = child.popen.poll()  # waitpid(WNOHANG): reaps, and knows the real status
        else:
            # not our child (the gateway restarted): /proc, checked against the start time
            status = None if procs.is_running(self._pid, self._start_time, self._boot) else 0
        if status is not None:
            self._exit_status = self._last_exit_status = status
            # the leader is gone: so is the server, whoever asked. Its stubborn children go with it,
            # also when the caller never calls stop() after seeing the exit
            self._reap_remnants()
        return status

    async def wait_for_exit(self) -> int:
        while (status := self._poll()) is None:
            await self._exit_signal(30.0, fallback_interval=1.0)
        return status

    async def stop(self, now: bool = False) -> None:
        """SIGINT, SIGTERM, SIGKILL to the whole group, each with a bounded wait; ``now`` skips SIGINT."""
        if not self._pid:
            return
        self._stopping = True
        try:
            await self._signal_until_exit(now)
        finally:
            self._stopping = False
        if self._poll() is None:
            log.warning("server at %s (pid %d) did not die after SIGKILL", self.spec.server_prefix, self._pid)
            return
        log.info("server at %s stopped (status %s)", self.spec.server_prefix, self._exit_status)
        self._clear()

    async def _signal_until_exit(self, now: bool) -> None:
        steps = [] if now else [(signal.SIGINT, self.options.interrupt_timeout)]
        steps += [(signal.SIGTERM, self.options.term_timeout), (signal.SIGKILL, self.options.kill_timeout)]
        for sig, timeout in steps:
            if self._poll() is not None:
                return
            log.debug("sending %s to server at %s (group %d)", sig.name, self.spec.server_prefix, self._pid)
            procs.signal_group(self._pid, sig)
            if await self._wait_exited(timeout):
                return

    def _reap_remnants(self) -> None:
        """Kill what is left of the group once its leader has exited (children that ignored signals)."""
        if self._pid:
            procs.kill_remnants(self._pid, self._start_time, self._boot)

    def _kill_now(self) -> None:
        """SIGKILL the group without waiting: for cancelled starts, where we must not await."""
        if not self._pid:
            return
        if self._poll() is None:  # (an exited leader's remnants were killed by that poll)
            procs.signal_group(self._pid, signal.SIGKILL)
        # forget the Popen; subprocess reaps forgotten children on its next Popen()
        _CHILDREN.pop(self._pid, None)
        self._clear()

    async def _wait_exited(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._poll() is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await self._exit_signal(min(remaining, 0.25))
        return True

    async def _exit_signal(self, timeout: float, fallback_interval: float = EXIT_CHECK_INTERVAL) -> None:
        """Return when the server may have exited (a pidfd turns readable), or after ``timeout``."""
        try:
            fd = os.pidfd_open(self._pid)
        except ProcessLookupError:
            return
        except (OSError, AttributeError):  # no pidfd here: poll instead
            await asyncio.sleep(min(timeout, fallback_interval))
            return
        try:
            if procs.same_process(self._pid, self._start_time, self._boot) is None:
                return  # the pid has moved on since our last look
            loop = asyncio.get_running_loop()
            readable = loop.create_future()
            loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(readable, timeout)
            finally:
                loop.remove_reader(fd)
        finally:
            os.close(fd)


SPAWNER_CLASSES: dict[str, type[Spawner]] = {
    "localprocess": ProcessSpawner,
    "default": ProcessSpawner,
    "simple": ProcessSpawner,  # with SpawnerOptions(switch_user=False)
}


def spawner_class_for(name: str) -> type[Spawner]:
    """The class for ``c.JupyterHub.spawner_class``; 'simple' means SpawnerOptions(switch_user=False)."""
    try:
        return SPAWNER_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown spawner_class {name!r}; known: {', '.join(sorted(SPAWNER_CLASSES))}") from None
