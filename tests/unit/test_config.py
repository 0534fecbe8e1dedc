"""Configuration: values that would only fail later, far from their cause, are refused at start."""

from __future__ import annotations

import pytest

from backbone.runtime.config import ConfigError, Settings


def test_the_trading_shard_follows_the_source_rule() -> None:
    assert Settings.from_env({}).trading_shard == "trading-0"
    assert Settings.from_env({"BACKBONE_TRADING_SHARD": "eu.trading_1"}).trading_shard == "eu.trading_1"
    # Surrounding whitespace of an environment variable is dropped, as for every setting.
    assert Settings.from_env({"BACKBONE_TRADING_SHARD": " trading-1\n"}).trading_shard == "trading-1"
    # It names the shard's trades (trade:<shard>:<id>) and cursors in settlement and risk.
    for bad in ("a:b", "a b", "tr\u00e4ding", "x" * 65):
        with pytest.raises(ConfigError, match="BACKBONE_TRADING_SHARD"):
            Settings.from_env({"BACKBONE_TRADING_SHARD": bad})


def test_the_trading_lease_wait_is_whole_seconds_from_nothing_to_a_day() -> None:
    assert Settings.from_env({}).trading_lease_wait_seconds == 30
    assert Settings.from_env({"BACKBONE_TRADING_LEASE_WAIT_SECONDS": "0"}).trading_lease_wait_seconds == 0
    for bad in ("-1", "86401", "1.5", "soon", ""):
        with pytest.raises(ConfigError, match="BACKBONE_TRADING_LEASE_WAIT_SECONDS"):
            Settings.from_env({"BACKBONE_TRADING_LEASE_WAIT_SECONDS": bad})
