"""Command line: ``gateway`` (serve), ``gateway token``, ``gateway upgrade-db``, ``gateway --generate-config``.

The CLI only parses arguments into Settings and calls ``create_app``; everything else lives
in the app. Exit status 2 means a configuration problem, reported before anything binds.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import signal
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

from gateway import __version__, keys
from gateway.config import ConfigError, Settings, generate_config, load_settings, parse_overrides
from gateway.ops.lifecycle import AlreadyRunning, acquire_database_lock, release_database_lock
from gateway.ops.logs import configure_logging, set_level
from gateway.vocab.security import InsecureSecretFile

log = logging.getLogger("gateway")

SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {}


def subcommand(name: str):
    def register(func: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
        SUBCOMMANDS[name] = func
        return func

    return register


def setup_logging(level: str) -> None:
    configure_logging(level)


def common_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("-f", "--config", dest="config", default=None, help="jupyterhub_config.py to load")
    parser.add_argument("--log-level", dest="log_level", default=None, help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument("--db", dest="db_url", default=None, help="database URL (sqlite:///path)")
    return parser


def settings_from(args: argparse.Namespace, extra: Sequence[str]) -> Settings:
    """Settings from -f plus --Section.key=value overrides; exits 2 listing every problem."""
    overrides = parse_overrides([a for a in extra if a.startswith("--")])
    unknown = [a for a in extra if not a.startswith("--")]
    if unknown:
        raise ConfigError([f"Unrecognised argument(s): {' '.join(unknown)}"])
    hub = overrides.setdefault("JupyterHub", {})
    for attr, key in (("port", "port"), ("ip", "ip"), ("db_url", "db_url"), ("log_level", "log_level"),
                      ("base_url", "base_url")):
        value = getattr(args, attr, None)
        if value is not None:
            hub[key] = str(value) if attr != "port" else value
    config = args.config
    if config is None and os.path.exists("jupyterhub_config.py"):
        config = "jupyterhub_config.py"
    return load_settings(config, overrides)


def quiet_settings(args: argparse.Namespace, extra: Sequence[str]) -> Settings | int:
    """Settings for a subcommand whose stdout is its answer: logs go to stderr at WARNING unless asked.
    Returns the exit status 2 instead when the config has problems."""
    try:
        settings = settings_from(args, extra)
    except ConfigError as e:
        setup_logging("WARNING")
        return report_config_error(e)
    setup_logging(settings.log_level if args.log_level else "WARNING")
    return settings


def report_config_error(e: ConfigError) -> int:
    for problem in e.problems:
        print(f"gateway: config error: {problem}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------- serve


async def serve(settings: Settings, reload_config: Callable[[], Settings] | None = None) -> None:
    """Run until SIGTERM/SIGINT (or POST /hub/api/shutdown); SIGHUP re-reads the config.

    Stopping: the listening socket closes first, in-flight requests get ``shutdown_timeout``
    seconds to finish (``on_shutdown`` hooks run meanwhile, e.g. the proxy closing websockets
    with 1001), then the contexts unwind; user servers keep running unless ``cleanup_servers``.
    Raises AlreadyRunning when another gateway serves the same database.
    """
    from aiohttp import web

    from gateway.app import create_app
    from gateway.wire.frontdoor import listening_site

    tls = server_tls_context(settings) if settings.tls else None  # before anything starts: a bad file is exit 2
    lock = acquire_database_lock(settings.db_path)
    try:
        app = create_app(settings)
        stop = asyncio.Event()
        app[keys.SHUTDOWN] = _shutdown_function(app, stop)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=settings.shutdown_timeout)
        try:
            await runner.setup()  # runs start-up contexts: config errors surface here, before binding
        except BaseException:
            await runner.cleanup()  # close what the contexts that did start opened (the store's threads)
            raise
        try:
            public = (settings.listen_host, settings.listen_port, tls, app.get(keys.FRONT_LANE))
            # with TLS, first the hub API in plain http for servers and services (hub_api_url), served by
            # aiohttp's path only (the front-door lane would proxy; the hub-port middleware refuses that)
            internal = [(settings.hub_ip, settings.hub_port, None, None)] if tls is not None else []
            for host, port, ssl_context, lane in [*internal, public]:
                site = listening_site(runner, host, port, reuse_address=True, ssl_context=ssl_context, lane=lane,
                                      drains=app[keys.FRONT_DRAINS], shutdown_timeout=settings.shutdown_timeout)
                await site.start()
                log.info("gateway %s listening on %s://%s:%d%s%s", __version__, "https" if ssl_context else "http",
                         host, port, settings.base_url, " (the hub API for servers and services)" if internal and
                         (host, port) == internal[0][:2] else "")
            if internal and settings.hub_ip not in ("127.0.0.1", "::1", "localhost"):
                log.warning("JupyterHub.hub_ip = %r: the hub API is served in plain http beyond this machine "
                            "(tokens travel in the clear there)", settings.hub_ip)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            reloads: set[asyncio.Task] = set()
            if reload_config is not None:
                def on_sighup() -> None:
                    if tls is not None:
                        reload_certificate(tls, settings)
                    task = asyncio.create_task(_reload(app, reload_config))
                    reloads.add(task)
                    task.add_done_callback(reloads.discard)

                loop.add_signal_handler(signal.SIGHUP, on_sighup)
            await stop.wait()
            log.info("Stopping gateway (in-flight requests get %gs)", settings.shutdown_timeout)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, _force_exit, sig)
            loop.add_signal_handler(signal.SIGHUP, lambda: None)  # no reload (nor death) while stopping
        finally:
            await runner.cleanup()
    finally:
        release_database_lock(lock)


def server_tls_context(settings: Settings) -> ssl.SSLContext:
    """The https listener's context: ssl_cert (with its chain) and ssl_key; ConfigError naming the problem."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.ssl_cert, settings.ssl_key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError([f"JupyterHub.ssl_cert / ssl_key ({settings.ssl_cert}, {settings.ssl_key}): "
                           f"cannot load the certificate and key: {e}"]) from None
    return context


def reload_certificate(live: ssl.SSLContext, settings: Settings) -> None:
    """SIGHUP: the files of ssl_cert/ssl_key read again (a certificate renewed in place, as certbot does), for
    new connections. One snapshot of the two files is checked on a fresh context, then loaded into the live
    one: a pair that does not load (say, half-written) never reaches it, and a failed load there would
    leave it unable to shake hands."""
    try:
        with tempfile.TemporaryDirectory(prefix="gateway-tls-") as folder:  # 0700: only this user reads the key
            cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
            for source, copy in ((settings.ssl_cert, cert), (settings.ssl_key, key)):
                with open(source, "rb") as f, open(os.open(copy, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as out:
                    out.write(f.read())
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
            live.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        log.error("Keeping the TLS certificate in use: cannot load %s and %s: %s", settings.ssl_cert,
                  settings.ssl_key, e)
        return
    log.info("Reloaded the TLS certificate from %s", settings.ssl_cert)


def run_loop(main, use_uvloop: bool):
    """asyncio.run(main), on uvloop's loop when asked for and installed (it costs less CPU per request)."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            log.debug("event loop: uvloop %s", uvloop.__version__)
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main)
    return asyncio.run(main)


def _force_exit(sig: signal.Signals) -> None:
    """A second SIGTERM/SIGINT while stopping: leave now (servers keep running; sqlite's WAL is safe)."""
    log.warning("%s while stopping: exiting without waiting", sig.name)
    os._exit(1)


def _shutdown_function(app, stop: asyncio.Event) -> Callable[..., None]:
    """app[SHUTDOWN]: stop the gateway; ``servers`` (POST /hub/api/shutdown) overrides cleanup_servers."""

    def shutdown(servers: bool | None = None) -> None:
        if servers is not None and app.get(keys.SERVERS) is not None:
            current = app[keys.SETTINGS]
            app[keys.SERVERS].apply_settings(current.replace(cleanup_servers=servers))
        stop.set()

    return shutdown


async def _reload(app, reload_config: Callable[[], Settings]) -> None:
    from gateway.app import reload_settings

    log.info("SIGHUP: reloading configuration")
    try:
        new = reload_config()
    except ConfigError as e:
        for problem in e.problems:
            log.error("Reload failed, configuration unchanged: %s", problem)
        return
    try:
        applied, restart = await reload_settings(app, new)
    except ConfigError as e:  # users/roles/services synchronised up to the problem; settings kept
        for problem in e.problems:
            log.error("Reload applied in part (running settings unchanged): %s", problem)
        return
    except Exception:
        log.exception("Reload failed")
        return
    log.info("Reloaded configuration; changed: %s", ", ".join(sorted(applied)) or "nothing")
    for name in sorted(restart):
        log.warning("Config key %s changed but needs a restart to take effect", name)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    parser = common_parser("gateway")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--ip", default=None)
    parser.add_argument("--base-url", dest="base_url", default=None)
    parser.add_argument("--generate-config", action="store_true", help="write a commented config file and exit")
    parser.add_argument("-o", "--output", default="jupyterhub_config.py", help="file for --generate-config")
    parser.add_argument("-y", "--yes", action="store_true", help="overwrite the file of --generate-config")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    args, extra = parser.parse_known_args(argv)
    if args.generate_config:
        return write_config_file(args.output, args.yes)
    setup_logging(args.log_level or "INFO")
    try:
        settings = settings_from(args, extra)
    except ConfigError as e:
        return report_config_error(e)
    set_level(settings.log_level)
    try:
        run_loop(serve(settings, reload_config=lambda: settings_from(args, extra)), settings.uvloop)
    except ConfigError as e:
        return report_config_error(e)
    except AlreadyRunning as e:
        log.error("%s", e)
        return 1
    except (OSError, InsecureSecretFile) as e:
        log.error("Cannot start: %s", e)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def write_config_file(path: str, overwrite: bool) -> int:
    if path == "-":
        sys.stdout.write(generate_config())
        return 0
    if os.path.exists(path) and not overwrite:
        print(f"{path} exists; pass -y to overwrite, or -o another file", file=sys.stderr)
        return 1
    with open(path, "w") as f:
        f.write(generate_config())
    print(f"Wrote {path}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- token


@subcommand("token")
def token_command(argv: list[str]) -> int:
    parser = common_parser("gateway token")
    parser.add_argument("username", nargs="*", help="user to create a token for (default: the current OS user)")
    parser.add_argument("--note", default="command-line generated")
    parser.add_argument("--expires-in", dest="expires_in", type=int, default=None, help="seconds until expiry")
    args, extra = parser.parse_known_args(argv)
    if len(args.username) > 1:
        print("Must specify exactly one username", file=sys.stderr)
        return 1
    settings = quiet_settings(args, extra)
    if isinstance(settings, int):
        return settings
    if args.expires_in is not None and args.expires_in <= 0:
        print("--expires-in must be a positive number of seconds", file=sys.stderr)
        return 1
    name = args.username[0] if args.username else getpass.getuser()
    return asyncio.run(_new_token(settings, name, args.note, args.expires_in))


async def _new_token(settings: Settings, raw_name: str, note: str, expires_in: int | None) -> int:
    from gateway.ops.bootstrap import sync_config
    from gateway.store import Store
    from gateway.vocab.names import normalize_username

    store = await Store.open(settings.db_path)
    try:
        await sync_config(store, settings)  # so admin_users/allowed_users exist, as `jupyterhub token` does
        user = await store.get_user(normalize_username(raw_name, settings))
        if user is None:
            print(f"No such user: {raw_name}", file=sys.stderr)
            return 1
        expires_at = time.time() + expires_in if expires_in else None
        _, plaintext = await store.create_token("user", user.id, note=note, expires_at=expires_at)
    except ConfigError as e:
        return report_config_error(e)
    finally:
        await store.close()
    print(plaintext)
    return 0


# ---------------------------------------------------------------- upgrade-db


@subcommand("upgrade-db")
def upgrade_db_command(argv: list[str]) -> int:
    parser = common_parser("gateway upgrade-db")
    args, extra = parser.parse_known_args(argv)
    try:
        settings = settings_from(args, extra)
    except ConfigError as e:
        return report_config_error(e)
    setup_logging(settings.log_level)
    return asyncio.run(_upgrade_db(settings))


async def _upgrade_db(settings: Settings) -> int:
    from gateway.store import Store

    if not os.path.exists(settings.db_path):
        print(f"No database at {settings.db_path}; nothing to upgrade", file=sys.stderr)
        return 0
    store = await Store.open(settings.db_path, migrate=False)
    try:
        pending = await store.pending_migrations()
        if not pending:
            print("Database is up to date", file=sys.stderr)
            return 0
        backup = store.backup()
        print(f"Backed up {settings.db_path} to {backup}", file=sys.stderr)
        for name in await store.migrate():
            print(f"Applied {name}", file=sys.stderr)
    finally:
        await store.close()
    return 0


# ---------------------------------------------------------------- set-password


@subcommand("set-password")
def set_password_command(argv: list[str]) -> int:
    parser = common_parser("gateway set-password")
    parser.add_argument("username", help="user whose password to set")
    parser.add_argument("--stdin", action="store_true", help="read the password from the first line of stdin")
    parser.add_argument("--create", action="store_true", help="create the user if it does not exist")
    parser.add_argument("--admin", action="store_true", help="with --create: make the new user an admin")
    parser.add_argument("--keep-sessions", dest="keep_sessions", action="store_true",
                        help="do not log the user out of existing sessions")
    args, extra = parser.parse_known_args(argv)
    settings = quiet_settings(args, extra)
    if isinstance(settings, int):
        return settings
    if settings.authenticator_class != "password":
        print(f"Note: authenticator_class is {settings.authenticator_class!r}; stored passwords are used only by "
              "the 'password' authenticator", file=sys.stderr)
    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("New password: ")
        if getpass.getpass("Repeat it: ") != password:
            print("The passwords differ; nothing changed", file=sys.stderr)
            return 1
    return asyncio.run(_set_password(settings, args.username, password, args.create, args.admin,
                                     not args.keep_sessions))


async def _set_password(settings: Settings, raw_name: str, password: str, create: bool, admin: bool,
                        end_sessions: bool) -> int:
    from gateway.authenticators.builtin import set_user_password
    from gateway.errors import ApiError
    from gateway.ops.bootstrap import sync_config
    from gateway.store import Store
    from gateway.vocab.names import normalize_username, validate_username

    name = normalize_username(raw_name, settings)
    if not validate_username(name, settings):
        print(f"Invalid user name: {raw_name!r}", file=sys.stderr)
        return 1
    store = await Store.open(settings.db_path)
    try:
        await sync_config(store, settings)
        user = await store.get_user(name)
        if user is None and create:
            user = await store.create_user(name, admin=admin, roles=("user", "admin") if admin else ("user",))
        if user is None:
            print(f"No such user: {raw_name} (add --create to create it)", file=sys.stderr)
            return 1
        await set_user_password(store, user, password, end_sessions=end_sessions)
    except ApiError as e:
        print(e.message, file=sys.stderr)
        return 1
    except ConfigError as e:
        return report_config_error(e)
    finally:
        await store.close()
    print(f"Password set for {name}", file=sys.stderr)
    return 0
