"""`backbone status`: what a running `backbone up` is made of, read from another terminal.

`backbone up` keeps ``status.json`` in its data folder: its own pid, and for each process (the
embedded PostgreSQL and Redis, or the external ones it was pointed at, and the four services)
its address, pid, state, restarts so far, when its current run started and how the last one
ended (its exit, and the last error it logged). The supervisor rewrites it whenever something
changes, atomically (a temporary file renamed over it), so a reader never sees half a file; `up`
removes it on the way out.

`status` reads the file and asks every process itself: a service's standard health service, a
PostgreSQL connection, a Redis PING. A process is SERVING, NOT SERVING (running, but not
answering yet or saying it does not serve) or DOWN (no process: it died and waits for its
restart, or an external store that cannot be reached).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import redis
from grpc_health.v1 import health_pb2

from ops.supervisor import health_status

STATUS_FILE = "status.json"
FORMAT = 1
PROBE_TIMEOUT_SECONDS = 1.0

SERVING = "SERVING"
NOT_SERVING = "NOT SERVING"
DOWN = "DOWN"

# Exit codes of `backbone status`.
ALL_SERVING, NOT_ALL_SERVING, NOTHING_RUNNING = 0, 1, 2


def write_atomically(path: Path, document: Mapping[str, Any]) -> None:
    """Replace `path` with `document` as one line of JSON; a reader sees the old file or the new one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(document) + "\n")
    os.replace(temporary, path)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process (the PostgreSQL user's, for example): alive
        return True
    return True


def _probe_store(name: str, url: str) -> bool:
    try:
        if name == "postgres":
            with psycopg.connect(url, connect_timeout=1) as connection:
                connection.execute("SELECT 1")
            return True
        client = redis.Redis.from_url(
            url, socket_connect_timeout=PROBE_TIMEOUT_SECONDS, socket_timeout=PROBE_TIMEOUT_SECONDS
        )
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (psycopg.Error, redis.RedisError, OSError):
        return False


def health_of(entry: Mapping[str, Any], endpoints: Mapping[str, str]) -> str:
    """SERVING, NOT SERVING or DOWN: what the process answers now."""
    kind, name = entry.get("kind"), entry.get("name", "")
    if kind == "external":
        url = endpoints.get(f"{'database' if name == 'postgres' else 'redis'}_url", "")
        return SERVING if url and _probe_store(name, url) else DOWN
    if entry.get("state") in ("restarting", "failed", "stopped") or not pid_alive(entry.get("pid")):
        return DOWN
    if kind == "store":
        url = endpoints.get("database_url" if name == "postgres" else "redis_url", "")
        return SERVING if url and _probe_store(name, url) else NOT_SERVING
    serving = health_status(str(entry.get("address", "")), PROBE_TIMEOUT_SECONDS)
    return SERVING if serving == health_pb2.HealthCheckResponse.SERVING else NOT_SERVING


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def report(data_dir: Path, endpoints_file: str) -> dict[str, Any]:
    """What `status --json` prints: ``running`` false with a ``message``, or every process's health."""
    path = data_dir / STATUS_FILE
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return {
            "running": False,
            "data_dir": str(data_dir),
            "message": f"nothing is running: no `backbone up` uses {data_dir}",
        }
    except (OSError, ValueError) as error:
        return {"running": False, "data_dir": str(data_dir), "message": f"cannot read {path}: {error}"}
    up_pid = document.get("up_pid")
    if not pid_alive(up_pid):
        leftovers = [e["pid"] for e in document.get("processes", []) if e.get("pid") and pid_alive(e["pid"])]
        message = (
            f"nothing is running: the last `backbone up` using {data_dir} (pid {up_pid}) ended without "
            "cleaning up"
        )
        if leftovers:
            message += f"; processes it started may still be running: pids {', '.join(map(str, leftovers))}"
        return {"running": False, "data_dir": str(data_dir), "message": message, "stale_pids": leftovers}
    endpoints: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        endpoints = json.loads((data_dir / endpoints_file).read_text())
    entries: list[dict[str, Any]] = list(document.get("processes", []))
    now = time.time()
    with ThreadPoolExecutor(max_workers=max(1, len(entries))) as pool:
        healths = list(pool.map(lambda entry: health_of(entry, endpoints), entries))
    processes = []
    for entry, health in zip(entries, healths, strict=True):
        running = entry.get("kind") != "external" and health != DOWN
        restart_at = entry.get("restart_at")
        processes.append(
            {
                "name": entry.get("name"),
                "kind": entry.get("kind"),
                "health": health,
                "address": entry.get("address"),
                "pid": entry.get("pid") if running else None,
                "restarts": entry.get("restarts", 0),
                "uptime_seconds": round(now - entry["started_at"], 1)
                if running and entry.get("started_at")
                else None,
                "state": entry.get("state"),
                "last_exit": entry.get("last_exit"),
                "last_error": entry.get("last_error"),
                "restart_in_seconds": round(max(0.0, restart_at - now), 1) if restart_at else None,
            }
        )
    return {
        "running": True,
        "data_dir": str(data_dir),
        "up_pid": up_pid,
        "state": document.get("state"),
        "uptime_seconds": round(now - document["started_at"], 1) if document.get("started_at") else None,
        "processes": processes,
    }


def lines(status: Mapping[str, Any]) -> list[str]:
    """The report as a table for people."""
    if not status["running"]:
        return [str(status["message"])]
    head = (
        f"backbone up (pid {status['up_pid']}, data {status['data_dir']}) {status['state']}, "
        f"up {_duration(status['uptime_seconds'])}"
    )
    if not status["processes"]:
        return [head, "no process started yet"]
    rows = [("PROCESS", "HEALTH", "ADDRESS", "PID", "RESTARTS", "UPTIME", "")]
    for process in status["processes"]:
        notes = []
        if process["kind"] == "external":
            notes.append("external (not started by backbone up)")
        if process["last_exit"]:
            notes.append(f"last exit: {process['last_exit']}")
        if process["restart_in_seconds"] is not None:
            notes.append(f"restarting in {process['restart_in_seconds']:g}s")
        if process["last_error"]:
            notes.append(f"last error: {process['last_error']}")
        rows.append(
            (
                str(process["name"]),
                str(process["health"]),
                str(process["address"]),
                str(process["pid"] or "-"),
                str(process["restarts"]) if process["kind"] != "external" else "-",
                _duration(process["uptime_seconds"]),
                "; ".join(notes),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    table = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in rows
    ]
    return [head, *(line.rstrip() for line in table)]


def exit_code(status: Mapping[str, Any]) -> int:
    if not status["running"]:
        return NOTHING_RUNNING
    processes = status["processes"]
    serving = bool(processes) and all(process["health"] == SERVING for process in processes)
    return ALL_SERVING if serving else NOT_ALL_SERVING


def status(data_dir: Path, endpoints_file: str, as_json: bool) -> int:
    """Print the report; 0 when every process is SERVING, 1 when one is not, 2 when nothing runs."""
    result = report(data_dir, endpoints_file)
    if as_json:
        print(json.dumps(result))
    else:
        print("\n".join(lines(result)))
    return exit_code(result)
