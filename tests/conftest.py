"""Shared fixtures: a real embedded PostgreSQL and Redis, and whole systems of real service processes.

One PostgreSQL and one Redis server run for the whole test session (in a
temporary folder, on free ports). Every `system` gets its own database and
its own Redis database number, and its four services run as real processes
on free ports, so tests can SIGTERM or SIGKILL them.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis

from backbone.runtime.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from ops.supervisor import ServiceProcesses


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("postgres"), durable=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), durable=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(postgres_server: EmbeddedPostgres) -> str:
    """The shared test database; tests that use it keep their data apart with unique ids."""
    return postgres_server.url


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    """Redis database 0, shared; tests that use it keep their keys apart with unique ids."""
    return redis_server.url


@pytest.fixture(scope="session")
def new_database(postgres_server: EmbeddedPostgres) -> Callable[[], str]:
    """Make an empty database and return its URL."""
    base = postgres_server.url.rsplit("/", 1)[0]

    def make() -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return f"{base}/{name}"

    return make


# Redis database numbers 1-15 for systems (0 is the store tests'); a module's systems give
# theirs back, flushed, when the module ends, so the session may start more than 15 in all.
_free_redis_numbers = list(range(1, 16))


@dataclass
class System:
    """A running Backbone: four service processes over their own database and Redis number."""

    services: ServiceProcesses
    admin_key: str
    database_url: str
    redis_url: str
    log_dir: Path

    @property
    def gateway(self) -> str:
        return self.services.address("gateway")


@pytest.fixture(scope="module")
def system_factory(
    new_database: Callable[[], str], redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., System]]:
    """Start systems (each with fresh storage); every one is stopped when the module ends."""
    started: list[System] = []

    def start(**overrides: str) -> System:
        if not _free_redis_numbers:
            raise RuntimeError("more systems at once than Redis databases")
        number = _free_redis_numbers.pop(0)
        admin_key = "test-admin-" + secrets.token_hex(8)
        environment = {
            "BACKBONE_DATABASE_URL": new_database(),
            "BACKBONE_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/{number}",
            "BACKBONE_ADMIN_KEY": admin_key,
            "BACKBONE_LOG_FORMAT": "json",
            "BACKBONE_LOG_LEVEL": "info",
            "BACKBONE_GRACE_PERIOD_SECONDS": "5",
            **{
                f"BACKBONE_{name.upper()}_ADDRESS": f"127.0.0.1:{free_port()}"
                for name in ("gateway", "risk", "trading", "settlement")
            },
            **overrides,
        }
        log_dir = tmp_path_factory.mktemp("logs")
        services = ServiceProcesses(environment, log_dir)
        services.start_all()
        system = System(
            services,
            admin_key,
            environment["BACKBONE_DATABASE_URL"],
            environment["BACKBONE_REDIS_URL"],
            log_dir,
        )
        started.append(system)
        return system

    yield start
    for system in started:
        system.services.stop_all()
        number = int(system.redis_url.rsplit("/", 1)[1])
        with redis.Redis.from_url(system.redis_url) as client:
            client.flushdb()
        _free_redis_numbers.append(number)


@pytest.fixture(scope="module")
def system(system_factory: Callable[..., System]) -> System:
    """One running system shared by the tests of a module."""
    return system_factory()
