"""A Backbone of a tool's own: embedded PostgreSQL and Redis in a temporary folder, the four services.

Storage is durable by default, as `backbone up` runs it (fsync on, Redis append-only); ``durable=False``
turns fsync off, which measures less than a real deployment does.
"""

from __future__ import annotations

import contextlib
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from backbone.runtime.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from ops.supervisor import ServiceProcesses


@dataclass
class OwnSystem:
    """A running system and how to reach it."""

    gateway: str
    admin_key: str
    database_url: str
    redis_url: str
    services: ServiceProcesses
    folder: Path
    durable: bool
    store_pids: dict[str, int]

    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self.services.processes.items()}

    def parts(self) -> dict[str, int]:
        """The services' pids and the stores' (PostgreSQL's postmaster, Redis), by name."""
        return self.pids() | self.store_pids


@contextlib.contextmanager
def own_system(
    durable: bool = True,
    environment: Mapping[str, str] | None = None,
    keep_logs_in: Path | None = None,
) -> Iterator[OwnSystem]:
    """Start a system on free ports; stop everything (and delete its folder) on the way out."""
    with tempfile.TemporaryDirectory(prefix="backbone-perf-") as folder_name:
        folder = Path(folder_name)
        postgres = EmbeddedPostgres(folder / "postgres", durable=durable)
        cache = EmbeddedRedis(folder / "redis", durable=durable)
        services: ServiceProcesses | None = None
        try:
            admin_key = "perf-" + secrets.token_hex(12)
            settings = {
                "BACKBONE_DATABASE_URL": postgres.start(),
                "BACKBONE_REDIS_URL": cache.start(),
                "BACKBONE_ADMIN_KEY": admin_key,
                "BACKBONE_LOG_LEVEL": "warning",
                "BACKBONE_LOG_FORMAT": "json",
                **{
                    f"BACKBONE_{name.upper()}_ADDRESS": f"127.0.0.1:{free_port()}"
                    for name in ("gateway", "risk", "trading", "settlement")
                },
                **(environment or {}),
            }
            services = ServiceProcesses(settings, keep_logs_in or folder / "logs")
            services.start_all()
            yield OwnSystem(
                gateway=services.address("gateway"),
                admin_key=admin_key,
                database_url=settings["BACKBONE_DATABASE_URL"],
                redis_url=settings["BACKBONE_REDIS_URL"],
                services=services,
                folder=folder,
                durable=durable,
                store_pids={
                    name: store.process.pid
                    for name, store in (("postgres", postgres), ("redis", cache))
                    if store.process is not None
                },
            )
        finally:
            if services is not None:
                services.stop_all()
            cache.stop()
            postgres.stop()
