"""The deployment manifests: every service's environment is one the real configuration loader
accepts, and the addresses the services are given for each other are where those services listen.

compose.yaml alone is the one-shard laptop deployment; compose.shards.yaml laid over it (as `docker
compose -f compose.yaml -f compose.shards.yaml` does) splits the symbols between two trading shards.
No Docker engine runs here, so the files are checked the way compose reads them: YAML with merge keys,
the override's mappings merged into the base's by key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from backbone.runtime.config import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _merged(base: Any, override: Any) -> Any:
    """Compose's merge of an override file: mappings by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {
            key: _merged(base[key], value) if key in base else value for key, value in override.items()
        } | {key: value for key, value in base.items() if key not in override}
    return override


def _services(*files: str) -> dict[str, dict[str, Any]]:
    merged: dict[str, Any] = {}
    for name in files:
        merged = _merged(merged, yaml.safe_load((DEPLOY / name).read_text()))
    return merged["services"]


def _backbone(services: dict[str, dict[str, Any]]) -> dict[str, tuple[str, Settings]]:
    """Service name -> (what it serves, its settings as the real loader reads its environment)."""
    found = {}
    for name, service in services.items():
        command = service.get("command", [])
        if command[:1] == ["serve"]:
            environment = {key: str(value) for key, value in service["environment"].items()}
            found[name] = (command[1], Settings.from_env(environment))
    return found


def _port(address: str) -> str:
    return address.rpartition(":")[2]


@pytest.mark.parametrize("files", [("compose.yaml",), ("compose.yaml", "compose.shards.yaml")])
def test_every_service_is_configured_where_the_others_reach_it(files: tuple[str, ...]) -> None:
    services = _services(*files)
    backbone = _backbone(services)
    assert sorted(kind for kind, _ in backbone.values()).count("trading") == len(files)
    assert {kind for kind, _ in backbone.values()} == {"gateway", "risk", "trading", "settlement"}
    gateway = next(settings for kind, settings in backbone.values() if kind == "gateway")
    shards = dict(gateway.trading_shards) or {gateway.trading_shard: gateway.trading_address}
    for name, (kind, settings) in backbone.items():
        assert services[name]["image"] == services["gateway"]["image"], name
        assert settings.database_url and settings.redis_url and settings.admin_key == gateway.admin_key
        listen_port = _port(settings.listen_address)
        if kind == "trading":
            # Reached at its own service name and listening port, under its shard's name.
            assert shards[settings.trading_shard] == f"{name}:{listen_port}", name
        else:
            assert settings.address_of(kind) == f"{name}:{listen_port}", name
        # Every service is told the same shards (risk consumes each; the gateway routes to them).
        if kind in ("gateway", "risk"):
            assert settings.trading_shard_names == tuple(shards), name


def test_the_shards_own_disjoint_symbols_and_the_default_shard_comes_first() -> None:
    backbone = _backbone(_services("compose.yaml", "compose.shards.yaml"))
    owned = {
        settings.trading_shard: settings.trading_symbols
        for kind, settings in backbone.values()
        if kind == "trading"
    }
    assert set(owned) == {"trading-0", "trading-1"} and all(owned.values())
    assert not set(owned["trading-0"]) & set(owned["trading-1"])
    gateway = next(settings for kind, settings in backbone.values() if kind == "gateway")
    assert gateway.trading_shard_names[0] == "trading-0"
