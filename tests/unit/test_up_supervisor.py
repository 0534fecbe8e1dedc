"""`backbone up`'s supervisor: restart backoff and its reset on a fake clock; the status file and report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from backbone.runtime.embedded import free_port
from backbone.runtime.reconnect import Backoff
from ops import status as status_file
from ops.supervisor import (
    RESTART_BACKOFF,
    STORE_START_ATTEMPTS,
    Child,
    GaveUp,
    RestartBackoff,
    Supervisor,
    describe_exit,
    last_logged_error,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Lines:
    """A logger keeping (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def error(self, event: str, **fields: Any) -> None:
        self.lines.append(("error", event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append(("info", event, fields))

    def events(self) -> list[str]:
        return [event for _, event, _ in self.lines]


class FakeChild(Child):
    """A process that runs until `die()`, serves once `serving` is set, and counts its spawns."""

    def __init__(self, name: str, kind: str = "service") -> None:
        super().__init__(name, f"127.0.0.1:{1000 + len(name)}")
        self.kind = kind
        self.returncode: int | None = None
        self.serving = True
        self.spawns = 0
        self.spawn_error: Exception | None = None
        self.last_words: str | None = None
        self._pid = 100

    def die(self, returncode: int = -9) -> None:
        self.returncode = returncode

    def spawn(self) -> None:
        if self.spawn_error is not None:
            raise self.spawn_error
        self.spawns += 1
        self._pid += 1
        self.returncode = None

    def pid(self) -> int | None:
        return self._pid

    def poll(self) -> int | None:
        return self.returncode

    def ready(self) -> bool:
        return self.serving

    def last_error(self) -> str | None:
        return self.last_words


def supervised(
    *children: FakeChild, stopping: list[bool] | None = None
) -> tuple[Supervisor, FakeClock, Lines]:
    clock, lines = FakeClock(), Lines()
    flag = stopping if stopping is not None else [False]
    supervisor = Supervisor(
        children, stopping=lambda: flag[0], clock=clock, wall_clock=lambda: clock.now + 1e9, logger=lines
    )
    return supervisor, clock, lines


def test_restart_waits_double_from_half_a_second_to_ten() -> None:
    backoff = RestartBackoff()
    assert [backoff.delay_after(1.0) for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_a_run_of_thirty_seconds_starts_the_series_again() -> None:
    backoff = RestartBackoff()
    assert [backoff.delay_after(0.1) for _ in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff.delay_after(29.9) == 8.0  # not long enough
    assert backoff.delay_after(30.0) == 0.5
    assert backoff.delay_after(5.0) == 1.0
    other = RestartBackoff(Backoff(initial_seconds=1, factor=3, max_seconds=20, reset_after_seconds=5))
    assert [other.delay_after(0) for _ in range(4)] == [1, 3, 9, 20]
    assert other.delay_after(5) == 1


def test_the_default_policy_is_the_documented_one() -> None:
    assert (
        Backoff(initial_seconds=0.5, factor=2.0, max_seconds=10.0, reset_after_seconds=30.0)
        == RESTART_BACKOFF
    )


def test_exit_descriptions() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-15) == "killed by SIGTERM"
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(-200) == "killed by signal 200"


def test_a_dead_service_is_restarted_after_the_backoff_and_logged() -> None:
    risk = FakeChild("risk")
    changes: list[list[dict[str, Any]]] = []
    supervisor, clock, lines = supervised(risk)
    supervisor._on_change = lambda: changes.append(supervisor.snapshot())

    supervisor.tick()
    assert risk.spawns == 0 and lines.lines == [] and changes == []

    clock.advance(100)
    risk.die(-9)
    supervisor.tick()
    level, event, fields = lines.lines[-1]
    assert (level, event) == ("error", "process exited; restarting")
    assert fields == {
        "process": "risk",
        "pid": 100,
        "exit": "killed by SIGKILL",
        "restarts": 0,
        "next_restart_s": 0.5,
    }
    assert changes[-1][0]["state"] == "restarting"
    assert changes[-1][0]["restart_at"] == pytest.approx(clock.now + 1e9 + 0.5)

    clock.advance(0.4)
    supervisor.tick()
    assert risk.spawns == 0  # not yet
    clock.advance(0.1)
    risk.serving = False
    supervisor.tick()
    assert risk.spawns == 1
    assert lines.lines[-1][1:] == ("process restarted", {"process": "risk", "pid": 101, "restarts": 1})
    assert supervisor.snapshot()[0]["state"] == "starting"

    supervisor.tick()  # still not serving
    assert supervisor.snapshot()[0]["state"] == "starting"
    clock.advance(1.5)
    risk.serving = True
    supervisor.tick()
    assert lines.lines[-1][1] == "process serving again"
    assert lines.lines[-1][2]["down_s"] == 2.0
    entry = supervisor.snapshot()[0]
    assert {k: entry[k] for k in ("name", "kind", "pid", "state", "restarts", "last_exit", "restart_at")} == {
        "name": "risk",
        "kind": "service",
        "pid": 101,
        "state": "running",
        "restarts": 1,
        "last_exit": "killed by SIGKILL",
        "restart_at": None,
    }
    assert entry["started_at"] == pytest.approx(clock.now - 1.5 + 1e9)


def test_deaths_in_a_row_wait_longer_and_a_long_run_resets() -> None:
    trading = FakeChild("trading")
    supervisor, clock, lines = supervised(trading)
    waits = []
    for _ in range(6):
        trading.die(1)
        supervisor.tick()
        wait = lines.lines[-1][2]["next_restart_s"]
        waits.append(wait)
        clock.advance(wait)
        supervisor.tick()  # restarted
        supervisor.tick()  # serving
        clock.advance(2)
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert supervisor.snapshot()[0]["restarts"] == 6
    clock.advance(30)
    trading.die(1)
    supervisor.tick()
    assert lines.lines[-1][2]["next_restart_s"] == 0.5
    assert lines.lines[-1][2]["exit"] == "exit code 1"


def test_nothing_is_restarted_while_stopping() -> None:
    gateway = FakeChild("gateway")
    stopping = [False]
    supervisor, clock, lines = supervised(gateway, stopping=stopping)
    gateway.die(-2)  # Ctrl-C reaches the services too
    stopping[0] = True
    supervisor.tick()
    clock.advance(60)
    supervisor.tick()
    assert gateway.spawns == 0 and lines.lines == []


def test_a_store_that_never_answers_is_given_up_a_service_is_not() -> None:
    redis, settlement = FakeChild("redis", kind="store"), FakeChild("settlement")
    supervisor, clock, lines = supervised(redis, settlement)
    redis.serving = settlement.serving = False
    redis.die(1)
    settlement.die(1)
    with pytest.raises(GaveUp, match=r"redis died 5 times in a row before answering \(exit code 1\)"):
        for _ in range(20):
            supervisor.tick()
            clock.advance(10)
            if redis.returncode is None:
                redis.die(1)  # dies again before it ever answers
            if settlement.returncode is None:
                settlement.die(1)
    assert redis.spawns == STORE_START_ATTEMPTS  # each restart died before answering
    assert supervisor.snapshot()[0]["state"] == "failed"
    assert lines.lines[-1][1] == "process exited; giving up"
    assert settlement.spawns >= STORE_START_ATTEMPTS  # still being restarted


def test_a_store_that_answered_in_between_is_not_given_up() -> None:
    postgres = FakeChild("postgres", kind="store")
    supervisor, clock, _ = supervised(postgres)
    for _ in range(3 * STORE_START_ATTEMPTS):
        postgres.die(-9)
        supervisor.tick()
        clock.advance(10)
        supervisor.tick()  # restarted
        supervisor.tick()  # answers
    assert postgres.spawns == 3 * STORE_START_ATTEMPTS


def test_the_last_error_a_service_logged_is_found_in_its_json_log(tmp_path: Path) -> None:
    log = tmp_path / "trading.log"
    first_run = [
        {"event": "trading ready", "level": "info"},
        {"event": "cannot serve", "level": "critical", "error": "an earlier run's trouble"},
    ]
    log.write_text("".join(json.dumps(line) + "\n" for line in first_run))
    second_run_starts = log.stat().st_size
    assert last_logged_error(log, second_run_starts) is None  # nothing logged by this run yet
    second_run = [
        {"event": "journal cannot be replayed", "level": "critical", "why": "payload", "sequence": 2},
        {"event": "cannot serve", "level": "critical", "error": "the journal of shard 'x' cannot be..."},
        {"event": "stopped", "level": "info"},
    ]
    with log.open("a") as file:
        file.write("".join(json.dumps(line) + "\n" for line in second_run))
        file.write("Traceback (most recent call last):\n")  # not JSON: passed over
    assert last_logged_error(log, second_run_starts) == "cannot serve: the journal of shard 'x' cannot be..."
    assert last_logged_error(log) == "cannot serve: the journal of shard 'x' cannot be..."
    with log.open("a") as file:
        file.write(
            json.dumps({"event": "stopping the process", "level": "critical", "why": "lease lost"}) + "\n"
        )
    assert last_logged_error(log, second_run_starts) == "stopping the process: lease lost"
    assert last_logged_error(tmp_path / "missing.log") is None


def test_a_death_is_logged_and_recorded_with_the_last_error_of_its_run(tmp_path: Path) -> None:
    trading = FakeChild("trading")
    supervisor, _, lines = supervised(trading)
    trading.last_words = "cannot serve: the journal of shard 'trading-0' cannot be replayed at sequence 2"
    trading.die(3)
    supervisor.tick()
    level, event, fields = lines.lines[-1]
    assert (level, event) == ("error", "process exited; restarting")
    assert fields["why"] == trading.last_words and fields["exit"] == "exit code 3"
    (entry,) = supervisor.snapshot()
    assert entry["last_error"] == trading.last_words

    # `backbone status` shows it beside the exit.
    status_file.write_atomically(
        tmp_path / status_file.STATUS_FILE,
        {"up_pid": os.getpid(), "state": "running", "started_at": time.time(), "processes": [entry]},
    )
    report = status_file.report(tmp_path, "endpoints.json")
    assert report["processes"][0]["last_error"] == trading.last_words
    row = status_file.lines(report)[-1]
    assert "last exit: exit code 3; " in row and row.endswith(f"; last error: {trading.last_words}"), row


def test_a_spawn_that_fails_counts_as_a_death() -> None:
    risk = FakeChild("risk")
    supervisor, clock, lines = supervised(risk)
    risk.die(-9)
    supervisor.tick()
    risk.spawn_error = OSError("no more processes")
    clock.advance(0.5)
    supervisor.tick()
    assert lines.events()[-2:] == [
        "process could not be started",
        "process exited; restarting",
    ]
    assert lines.lines[-1][2]["next_restart_s"] == 1.0
    risk.spawn_error = None
    clock.advance(1.0)
    supervisor.tick()
    assert risk.spawns == 1 and supervisor.snapshot()[0]["restarts"] == 2


# --- the status file and `backbone status` -------------------------------------------------------


def test_the_status_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / status_file.STATUS_FILE
    status_file.write_atomically(path, {"a": 1})
    status_file.write_atomically(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == [status_file.STATUS_FILE]  # no temporary left


def test_status_says_when_nothing_runs(tmp_path: Path) -> None:
    report = status_file.report(tmp_path, "endpoints.json")
    assert report["running"] is False and report["message"].startswith("nothing is running")
    assert status_file.exit_code(report) == status_file.NOTHING_RUNNING

    # A `backbone up` that was killed leaves its file behind: its pid tells.
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    status_file.write_atomically(
        tmp_path / status_file.STATUS_FILE,
        {"up_pid": int(ended.stdout), "processes": [{"name": "risk", "pid": os.getpid()}]},
    )
    report = status_file.report(tmp_path, "endpoints.json")
    assert report["running"] is False and "ended without cleaning up" in report["message"]
    assert report["stale_pids"] == [os.getpid()]


def test_status_of_a_restarting_process_is_down(tmp_path: Path) -> None:
    now = time.time()
    status_file.write_atomically(
        tmp_path / status_file.STATUS_FILE,
        {
            "up_pid": os.getpid(),
            "data_dir": str(tmp_path),
            "state": "running",
            "started_at": now - 75,
            "processes": [
                {
                    "name": "risk",
                    "kind": "service",
                    "address": "127.0.0.1:1",
                    "pid": 4242,
                    "state": "restarting",
                    "restarts": 2,
                    "started_at": now - 3,
                    "last_exit": "killed by SIGKILL",
                    "restart_at": now + 2,
                }
            ],
        },
    )
    report = status_file.report(tmp_path, "endpoints.json")
    assert report["running"] is True and report["up_pid"] == os.getpid()
    (risk,) = report["processes"]
    assert (risk["health"], risk["pid"], risk["restarts"], risk["uptime_seconds"]) == ("DOWN", None, 2, None)
    assert 1 < risk["restart_in_seconds"] <= 2
    assert status_file.exit_code(report) == status_file.NOT_ALL_SERVING
    head, columns, row = status_file.lines(report)
    assert head.startswith(f"backbone up (pid {os.getpid()}, data {tmp_path}) running, up 1m1")
    assert columns.split() == ["PROCESS", "HEALTH", "ADDRESS", "PID", "RESTARTS", "UPTIME"]
    assert row.split()[:6] == ["risk", "DOWN", "127.0.0.1:1", "-", "2", "-"]
    assert "last exit: killed by SIGKILL; restarting in " in row


def test_an_external_store_that_cannot_be_reached_is_down(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "endpoints.json").write_text(json.dumps({"redis_url": f"redis://127.0.0.1:{port}/0"}))
    status_file.write_atomically(
        tmp_path / status_file.STATUS_FILE,
        {
            "up_pid": os.getpid(),
            "data_dir": str(tmp_path),
            "state": "running",
            "started_at": time.time(),
            "processes": [{"name": "redis", "kind": "external", "address": f"127.0.0.1:{port}"}],
        },
    )
    report = status_file.report(tmp_path, "endpoints.json")
    (redis,) = report["processes"]
    assert (redis["health"], redis["pid"], redis["uptime_seconds"]) == ("DOWN", None, None)
    assert status_file.lines(report)[-1].endswith("external (not started by backbone up)")
