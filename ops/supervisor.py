"""Run the four services as child processes: `backbone up` and the tests use this.

Each service runs as ``python -m ops serve <name>`` (the `backbone` command) with the given
environment. A service counts as up when its standard health service answers
SERVING. Services can be stopped gracefully (SIGTERM: drain), killed
(SIGKILL) and started again one by one, which is what the fault tests do.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from backbone.runtime.config import SERVICE_NAMES, Settings
from backbone.runtime.server import HEALTH_DETAIL_KEY

# Start order: dependencies first; stop order is the reverse.
START_ORDER = ("settlement", "trading", "risk", "gateway")


class ServiceFailed(RuntimeError):
    """A service process exited or never became healthy."""


def health_check(address: str, service: str = "", timeout_seconds: float = 1.0) -> tuple[int, str]:
    """The health status a server reports for `service` ("" is the whole server), with its detail.

    The detail is the ``backbone-health-detail`` trailer a Backbone server adds to an entry
    (an outbox's lag and refusal, for example); "" when there is none or the call failed.
    """
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            request = health_pb2.HealthCheckRequest(service=service)
            response, call = stub.Check.with_call(request, timeout=timeout_seconds)  # type: ignore[attr-defined]
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return health_pb2.HealthCheckResponse.SERVICE_UNKNOWN, f"no health entry {service!r}"
            return health_pb2.HealthCheckResponse.UNKNOWN, ""
        trailers = dict(call.trailing_metadata() or ())
        return int(response.status), str(trailers.get(HEALTH_DETAIL_KEY, ""))


def health_status(address: str, timeout_seconds: float = 1.0) -> int:
    """The health status a server reports for the whole server ("" service)."""
    return health_check(address, "", timeout_seconds)[0]


class ServiceProcesses:
    """The four service processes of one system."""

    def __init__(self, environment: Mapping[str, str], log_dir: Path | None = None) -> None:
        self.environment = dict(environment)
        self.settings = Settings.from_env(self.environment)
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}

    def address(self, name: str) -> str:
        return self.settings.address_of(name)

    def log_path(self, name: str) -> Path | None:
        return self.log_dir / f"{name}.log" if self.log_dir else None

    def start(self, name: str) -> None:
        """Start one service (not waiting for it)."""
        if name not in SERVICE_NAMES:
            raise ValueError(f"unknown service {name!r}")
        running = self.processes.get(name)
        if running is not None and running.poll() is None:
            raise ServiceFailed(f"{name} is already running (pid {running.pid})")
        output: IO[bytes] | int | None = None
        path = self.log_path(name)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            output = self._logs[name] = open(path, "ab")  # noqa: SIM115 - closed in _close_log
        environment = {**os.environ, **self.environment}
        environment.pop("BACKBONE_LISTEN_ADDRESS", None)
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "ops", "serve", name],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            stdin=subprocess.DEVNULL,
        )

    def wait_healthy(self, name: str, timeout_seconds: float = 60.0) -> None:
        process = self.processes[name]
        deadline = time.monotonic() + timeout_seconds
        while True:
            code = process.poll()
            if code is not None:
                raise ServiceFailed(f"{name} exited with code {code} while starting{self._log_hint(name)}")
            if health_status(self.address(name)) == health_pb2.HealthCheckResponse.SERVING:
                return
            if time.monotonic() > deadline:
                raise ServiceFailed(f"{name} not healthy after {timeout_seconds:g}s{self._log_hint(name)}")
            time.sleep(0.05)

    def _log_hint(self, name: str) -> str:
        path = self.log_path(name)
        if path is None or not path.exists():
            return ""
        tail = "\n".join(path.read_text(errors="replace").splitlines()[-15:])
        return f"; last lines of {path}:\n{tail}"

    def start_all(self, timeout_seconds: float = 60.0) -> None:
        for name in START_ORDER:
            self.start(name)
        try:
            for name in START_ORDER:
                self.wait_healthy(name, timeout_seconds)
        except BaseException:
            self.stop_all()
            raise

    def stop(self, name: str, timeout_seconds: float = 30.0) -> int:
        """SIGTERM, wait for the drain, SIGKILL if it overruns; return the exit code."""
        return self._end(name, signal.SIGTERM, timeout_seconds)

    def kill(self, name: str) -> int:
        """SIGKILL: the process gets no chance to clean up."""
        return self._end(name, signal.SIGKILL, 10.0)

    def _end(self, name: str, signum: int, timeout_seconds: float) -> int:
        process = self.processes.get(name)
        if process is None:
            return 0
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)
            try:
                process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self._close_log(name)
        return int(process.returncode)

    def _close_log(self, name: str) -> None:
        log = self._logs.pop(name, None)
        if log is not None:
            log.close()

    def stop_all(self, timeout_seconds: float = 30.0) -> None:
        for name in reversed(START_ORDER):
            self.stop(name, timeout_seconds)

    def exited(self) -> dict[str, int]:
        """Services whose process has ended, with their exit codes."""
        return {
            name: process.returncode for name, process in self.processes.items() if process.poll() is not None
        }
