"""Risk's Redis keys: every name risk writes, how to build it and how to read it back.

The only place that spells them (the Lua scripts receive them as KEYS). Keys are hashed per
account (the account id is the hash tag), so every script touches one slot and Redis Cluster
works:

- ``risk:{<account>}:balances``: hash ``<ASSET>:total`` / ``<ASSET>:reserved``;
- ``risk:{<account>}:order:<order_id>``: hash asset, amount (currently held),
  original (held at reserve time), side, symbol, price_ticks; while a replace of the order
  is on its way, replacing (its id), replace_extra (what its grow added) and skipped (the
  lowest cap a trade left meanwhile) (risk/lua/reserve.lua, leg.lua);
- ``risk:{<account>}:applied``: hash ``<source>`` -> highest op id applied from
  that trading shard (op id = sequence*4 + leg), and ``halted:<source>`` -> the
  op id of a refused leg while one is outstanding;
- ``risk:cursor:<source>``: highest trading sequence fully applied;
- ``risk:epoch``, ``risk:ready``, ``risk:rebuild``, ``risk:rebuild-lock``,
  ``risk:ledger-cursor``, ``risk:balance-only:<source>``: the state's epoch and its
  rebuild (risk/rebuild.py). These and the scripts that read ``risk:epoch`` are the
  exception to one slot per script: under Redis Cluster they need the epoch kept per slot;
- ``risk:instruments``: hash ``<symbol>`` -> the instrument (a
  ``backbone.common.v1.Instrument`` in proto JSON), as trading's events created it;
- ``{risk:instruments}:applied``: hash ``<source>`` -> highest sequence of that trading
  shard whose instrument event is applied. Its hash tag is the name of ``risk:instruments``,
  so both are in one slot and one script stores an instrument and its sequence together.
"""

from __future__ import annotations

import re

# SCAN patterns matching every key of one kind (Redis glob: braces are literal).
ORDER_KEYS = "risk:{*}:order:*"
BALANCES_KEYS = "risk:{*}:balances"
CURSOR_KEYS = "risk:cursor:*"

TOTAL, RESERVED = "total", "reserved"

_BALANCES_KEY = re.compile(r"risk:\{(?P<account>[^}]+)\}:balances")
_CURSOR_PREFIX = "risk:cursor:"


def balances_key(account_id: str) -> str:
    return f"risk:{{{account_id}}}:balances"


def order_key(account_id: str, order_id: str) -> str:
    return f"risk:{{{account_id}}}:order:{order_id}"


def applied_key(account_id: str) -> str:
    return f"risk:{{{account_id}}}:applied"


def cursor_key(source: str) -> str:
    return f"{_CURSOR_PREFIX}{source}"


# The epoch of risk's state: written when a rebuild starts (after the old state is wiped);
# every script that changes the state checks the caller's epoch against it, so after a
# flush (the key is gone) or another rebuild a caller of an older epoch changes nothing.
EPOCH_KEY = "risk:epoch"
# Equal to the epoch once the rebuild is complete: reservations are made only then.
READY_KEY = "risk:ready"
# The rebuild in progress: hash epoch, ledger (the ledger snapshot applied), and per trading
# shard "trading:<shard>" -> the journal sequence of its open-orders snapshot, and
# "caught-up:<shard>" once its events reached that sequence.
REBUILD_KEY = "risk:rebuild"
# One risk process wipes the old state and starts the epoch (SET NX with an expiry).
REBUILD_LOCK_KEY = "risk:rebuild-lock"
# Highest ledger risk-event sequence applied (deposits; settlement's outbox).
LEDGER_CURSOR_KEY = "risk:ledger-cursor"
# Per trading shard: events at or below this sequence change totals only (the rebuilt
# state's open orders already reflect them).
_BALANCE_ONLY_PREFIX = "risk:balance-only:"


def balance_only_key(source: str) -> str:
    return f"{_BALANCE_ONLY_PREFIX}{source}"


INSTRUMENTS_KEY = "risk:instruments"
# Tagged with the whole name of INSTRUMENTS_KEY: the same cluster slot.
INSTRUMENTS_APPLIED_KEY = "{" + INSTRUMENTS_KEY + "}:applied"


def balance_field(asset: str, kind: str) -> str:
    """The field of `asset`'s total or reserved amount in an account's balances hash."""
    if kind not in (TOTAL, RESERVED):
        raise ValueError(f"no balance field of kind {kind!r}")
    return f"{asset}:{kind}"


def parse_order_key(key: str) -> tuple[str, str] | None:
    """(account id, order id) of an order key; None for any other key."""
    # risk:{<account, no '}'>}:order:<order, one line>, read without a regular expression (a
    # listing parses thousands).
    if not key.startswith("risk:{"):
        return None
    end = key.find("}:order:", 6)
    account, order = key[6:end], key[end + 8 :]
    if end < 7 or "}" in account or not order or "\n" in order:
        return None
    return account, order


def parse_balances_key(key: str) -> str | None:
    """The account id of a balances key; None for any other key."""
    matched = _BALANCES_KEY.fullmatch(key)
    return matched["account"] if matched else None


def parse_cursor_key(key: str) -> str | None:
    """The trading shard (source) of a cursor key; None for any other key."""
    source = key.removeprefix(_CURSOR_PREFIX)
    return source if source and source != key else None


def parse_balance_field(field: str) -> tuple[str, str] | None:
    """(asset, "total" or "reserved") of a balances hash field; None for any other field."""
    asset, _, kind = field.rpartition(":")
    return (asset, kind) if asset and kind in (TOTAL, RESERVED) else None
