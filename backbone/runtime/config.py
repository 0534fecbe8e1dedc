"""Every configuration variable, in one place.

All settings come from environment variables with the ``BACKBONE_`` prefix.
``Settings.from_env()`` reads them once; ``describe()`` lists them for
``backbone --help`` and the README.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from backbone.ids import SHARD_NAME_MAX_LENGTH, source_problem, symbol_problem

PREFIX = "BACKBONE_"
SERVICE_NAMES = ("gateway", "risk", "trading", "settlement")


class ConfigError(ValueError):
    """A configuration variable has a value that cannot be used."""


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    help: str


VARIABLES: tuple[Variable, ...] = (
    Variable("DATABASE_URL", "", "PostgreSQL URL; empty means `backbone up` starts an embedded one"),
    Variable("REDIS_URL", "", "Redis URL; empty means `backbone up` starts an embedded one"),
    Variable("GATEWAY_ADDRESS", "127.0.0.1:50051", "where the gateway is reached (public API)"),
    Variable("RISK_ADDRESS", "127.0.0.1:50052", "where the risk service is reached"),
    Variable("TRADING_ADDRESS", "127.0.0.1:50053", "where the trading service is reached"),
    Variable("SETTLEMENT_ADDRESS", "127.0.0.1:50054", "where the settlement service is reached"),
    Variable("LISTEN_ADDRESS", "", "address a served process binds; empty means its own *_ADDRESS"),
    Variable("ADMIN_KEY", "", "admin key for the AdminService; empty means `backbone up` makes one"),
    Variable("DATA_DIR", ".backbone", "folder for embedded PostgreSQL/Redis data and the admin key"),
    Variable("TRADING_SHARD", "trading-0", "name of this trading shard (source of its trades)"),
    Variable(
        "TRADING_SYMBOLS",
        "",
        "symbols this trading shard owns, comma-separated (BTC-USD,ETH-USD); it refuses to create or "
        "trade any other (FAILED_PRECONDITION, SYMBOL_NOT_OWNED); empty: every symbol (one shard)",
    ),
    Variable(
        "TRADING_SHARDS",
        "",
        "every trading shard the gateway and risk talk to, as name=host:port pairs, comma-separated "
        '("trading-0=127.0.0.1:50053,trading-1=127.0.0.1:50063"; the first is the default shard, '
        "which gets order ids made before sharding); each shard tells which symbols it owns; "
        "empty: one shard, BACKBONE_TRADING_SHARD at BACKBONE_TRADING_ADDRESS",
    ),
    Variable(
        "UP_TRADING_SHARDS",
        "",
        "`backbone up` (and the tests' systems) run one trading process per shard given here, as "
        'name=symbols joined by ";" ("trading-0=BTC-USD,ETH-USD;trading-1=SOL-USD"), each at its '
        "BACKBONE_TRADING_SHARDS address or else at BACKBONE_TRADING_ADDRESS's port plus 10 per shard "
        "after the first; empty: one trading process owning every symbol",
    ),
    Variable(
        "TRADING_LEASE_WAIT_SECONDS",
        "30",
        "how long a trading process waits for its shard's lease while another process holds it (it "
        "logs which) before it exits with an error; 0 tries once",
    ),
    Variable(
        "TRADING_SNAPSHOT_COMMANDS",
        "100000",
        "trading snapshots its engine after this many journal records (a start loads the newest "
        "snapshot and replays only what follows); 0 never by count",
    ),
    Variable(
        "TRADING_SNAPSHOT_SECONDS",
        "300",
        "trading also snapshots its engine this often when anything was journaled; 0 never by time",
    ),
    Variable("LOG_LEVEL", "info", "debug, info, warning or error"),
    Variable("LOG_FORMAT", "auto", "json, console, or auto (console on a terminal, else json)"),
    Variable("GRACE_PERIOD_SECONDS", "10", "time in-flight calls get to finish on SIGTERM"),
    Variable("CALL_TIMEOUT_SECONDS", "5", "deadline of every unary call between services"),
    Variable("MAX_MESSAGE_BYTES", "4194304", "largest gRPC message sent or received"),
    Variable("BATCH_MAX_ITEMS", "512", "most items coalesced into one internal stream message"),
    Variable(
        "DATABASE_POOL_SIZE",
        "8",
        "most PostgreSQL connections per service process; when all are busy a call waits for one "
        "(up to BACKBONE_CALL_TIMEOUT_SECONDS) instead of failing",
    ),
    Variable(
        "REDIS_POOL_SIZE",
        "64",
        "most Redis connections per service process; when all are busy a command waits for one "
        "(up to BACKBONE_CALL_TIMEOUT_SECONDS) instead of failing",
    ),
    Variable(
        "RECONCILE_INTERVAL_SECONDS",
        "10",
        "how often trading compares risk's reservations with its orders (and fences lost ones)",
    ),
    Variable(
        "RECONCILE_GRACE_SECONDS",
        "30",
        "age a reservation must reach before the reconciler may fence its order (longer than any "
        "order can still be on its way)",
    ),
    Variable(
        "POST_ONLY_MODE",
        "reject",
        "what the gateway does with a post-only order that would trade on arrival: reject (refused, "
        "POST_ONLY_WOULD_TAKE) or reprice (rests one tick behind the best opposite price)",
    ),
    Variable(
        "SELF_TRADE_PREVENTION",
        "none",
        "the gateway's self-trade prevention for orders that do not choose one: none, "
        "cancel_resting, cancel_incoming or cancel_both",
    ),
    Variable(
        "TRADING_DAY_END",
        "",
        'UTC time "HH:MM" (or "HH:MM:SS") at which trading expires every open DAY order, once a day '
        "(at start too when trading was down at that moment with DAY orders open); empty: never",
    ),
)

# The values BACKBONE_POST_ONLY_MODE and BACKBONE_SELF_TRADE_PREVENTION take.
POST_ONLY_MODES = ("reject", "reprice")
SELF_TRADE_PREVENTIONS = ("none", "cancel_resting", "cancel_incoming", "cancel_both")


def _choice(values: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = values[name].lower()
    if value not in choices:
        raise ConfigError(f"{PREFIX}{name} must be {', '.join(choices[:-1])} or {choices[-1]}, got {value!r}")
    return value


# "HH:MM" or "HH:MM:SS", 00:00 to 23:59:59: BACKBONE_TRADING_DAY_END.
_DAY_END_FORMAT = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])(:[0-5][0-9])?")


def day_end_problem(text: str) -> str | None:
    """What is wrong with a day end setting ("" is off and fine), or None."""
    if text and _DAY_END_FORMAT.fullmatch(text) is None:
        return f'must be a UTC time "HH:MM" or "HH:MM:SS" (00:00 to 23:59:59) or empty, got {text[:20]!r}'
    return None


def _shard_problem(name: str) -> str | None:
    """Why `name` cannot name a trading shard (it names trades, cursors and order ids), or None."""
    problem = source_problem(name)
    if problem is None and len(name) > SHARD_NAME_MAX_LENGTH:
        problem = (
            f"is {len(name)} characters long; a shard name is at most {SHARD_NAME_MAX_LENGTH} "
            "(it begins every order id the shard holds)"
        )
    return problem


def parse_trading_symbols(text: str) -> tuple[str, ...]:
    """BACKBONE_TRADING_SYMBOLS: the symbols, sorted and unique; () is every symbol."""
    symbols = [part.strip() for part in text.split(",")] if text else []
    for symbol in symbols:
        problem = symbol_problem(symbol)
        if problem:
            raise ConfigError(f"{PREFIX}TRADING_SYMBOLS: the symbol {symbol!r} {problem}")
    return tuple(sorted(set(symbols)))


def _shard_pairs(variable: str, text: str, separator: str, value_rule: str) -> list[tuple[str, str]]:
    """``name=value`` pairs joined by `separator`: every name a shard name, none twice, no value empty."""
    pairs: list[tuple[str, str]] = []
    for part in text.split(separator):
        name, equals, value = (piece.strip() for piece in part.partition("="))
        if not equals or not value:
            raise ConfigError(
                f"{PREFIX}{variable} must be {value_rule} pairs joined by {separator!r}, got {part!r}"
            )
        problem = _shard_problem(name)
        if problem:
            raise ConfigError(f"{PREFIX}{variable}: the shard name {name!r} {problem}")
        if name in dict(pairs):
            raise ConfigError(f"{PREFIX}{variable} names the shard {name!r} twice")
        pairs.append((name, value))
    return pairs


def parse_trading_shards(text: str, shard: str, address: str) -> tuple[tuple[str, str], ...]:
    """BACKBONE_TRADING_SHARDS as (name, address) pairs, the default shard first; empty: the one
    shard `shard` at `address`."""
    if not text:
        return ((shard, address),)
    shards = _shard_pairs("TRADING_SHARDS", text, ",", "name=host:port")
    for name, where in shards:
        if ":" not in where:
            raise ConfigError(
                f"{PREFIX}TRADING_SHARDS: the address of {name!r} must be host:port, got {where!r}"
            )
    return tuple(shards)


def parse_up_trading_shards(text: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """BACKBONE_UP_TRADING_SHARDS as (name, symbols) pairs; () is one shard owning every symbol."""
    if not text:
        return ()
    shards: list[tuple[str, tuple[str, ...]]] = []
    for name, symbols in _shard_pairs("UP_TRADING_SHARDS", text, ";", "name=SYMBOL,SYMBOL"):
        owned = parse_trading_symbols(symbols)
        for other, theirs in shards:
            if set(owned) & set(theirs):
                raise ConfigError(
                    f"{PREFIX}UP_TRADING_SHARDS gives {sorted(set(owned) & set(theirs))[0]} to both "
                    f"{other} and {name}: a symbol has one shard"
                )
        shards.append((name, owned))
    return tuple(shards)


def _integer(values: Mapping[str, str], name: str, minimum: int, maximum: int) -> int:
    raw = values[name]
    try:
        number = int(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} must be a whole number, got {raw!r}") from None
    if not minimum <= number <= maximum:
        raise ConfigError(f"{PREFIX}{name} must be between {minimum} and {maximum}, got {number}")
    return number


@dataclass(frozen=True)
class Settings:
    """The whole configuration, immutable once read."""

    database_url: str
    redis_url: str
    gateway_address: str
    risk_address: str
    trading_address: str
    settlement_address: str
    listen_address: str
    admin_key: str
    data_dir: Path
    trading_shard: str
    trading_lease_wait_seconds: int
    trading_snapshot_commands: int
    trading_snapshot_seconds: int
    log_level: str
    log_format: str
    grace_period_seconds: int
    call_timeout_seconds: int
    max_message_bytes: int
    batch_max_items: int
    database_pool_size: int
    redis_pool_size: int
    reconcile_interval_seconds: int
    reconcile_grace_seconds: int
    post_only_mode: str
    self_trade_prevention: str
    # BACKBONE_TRADING_DAY_END as given ("HH:MM[:SS]" UTC, checked; "" is off): trading/day_end.py.
    trading_day_end: str = ""
    # BACKBONE_TRADING_SYMBOLS: what this trading shard owns, sorted; () is every symbol.
    trading_symbols: tuple[str, ...] = ()
    # BACKBONE_TRADING_SHARDS: every trading shard as (name, address), the default shard first.
    trading_shards: tuple[tuple[str, str], ...] = ()
    # BACKBONE_UP_TRADING_SHARDS: the shards `backbone up` runs, as (name, symbols); () is one.
    up_trading_shards: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def trading_shard_names(self) -> tuple[str, ...]:
        """The name of every trading shard (risk waits for each one's open orders at a rebuild)."""
        return tuple(name for name, _ in self.trading_shards) or (self.trading_shard,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if environ is None else environ
        values = {v.name: source.get(PREFIX + v.name, v.default).strip() for v in VARIABLES}
        level = values["LOG_LEVEL"].lower()
        if level not in {"debug", "info", "warning", "error"}:
            raise ConfigError(f"{PREFIX}LOG_LEVEL must be debug, info, warning or error, got {level!r}")
        log_format = values["LOG_FORMAT"].lower()
        if log_format not in {"auto", "json", "console"}:
            raise ConfigError(f"{PREFIX}LOG_FORMAT must be auto, json or console, got {log_format!r}")
        for name in ("GATEWAY_ADDRESS", "RISK_ADDRESS", "TRADING_ADDRESS", "SETTLEMENT_ADDRESS"):
            if ":" not in values[name]:
                raise ConfigError(f"{PREFIX}{name} must be host:port, got {values[name]!r}")
        day_end = day_end_problem(values["TRADING_DAY_END"])
        if day_end:
            raise ConfigError(f"{PREFIX}TRADING_DAY_END {day_end}")
        shard = values["TRADING_SHARD"] or "trading-0"
        shard_problem = _shard_problem(shard)
        if shard_problem:  # it names the shard's trades and cursors in settlement and risk
            raise ConfigError(f"{PREFIX}TRADING_SHARD {shard_problem}")
        return cls(
            database_url=values["DATABASE_URL"],
            redis_url=values["REDIS_URL"],
            gateway_address=values["GATEWAY_ADDRESS"],
            risk_address=values["RISK_ADDRESS"],
            trading_address=values["TRADING_ADDRESS"],
            settlement_address=values["SETTLEMENT_ADDRESS"],
            listen_address=values["LISTEN_ADDRESS"],
            admin_key=values["ADMIN_KEY"],
            data_dir=Path(values["DATA_DIR"] or ".backbone"),
            trading_shard=shard,
            trading_lease_wait_seconds=_integer(values, "TRADING_LEASE_WAIT_SECONDS", 0, 86_400),
            trading_snapshot_commands=_integer(values, "TRADING_SNAPSHOT_COMMANDS", 0, 1_000_000_000),
            trading_snapshot_seconds=_integer(values, "TRADING_SNAPSHOT_SECONDS", 0, 86_400),
            log_level=level,
            log_format=log_format,
            grace_period_seconds=_integer(values, "GRACE_PERIOD_SECONDS", 0, 3600),
            call_timeout_seconds=_integer(values, "CALL_TIMEOUT_SECONDS", 1, 600),
            max_message_bytes=_integer(values, "MAX_MESSAGE_BYTES", 65536, 1 << 30),
            batch_max_items=_integer(values, "BATCH_MAX_ITEMS", 1, 100_000),
            database_pool_size=_integer(values, "DATABASE_POOL_SIZE", 1, 256),
            redis_pool_size=_integer(values, "REDIS_POOL_SIZE", 1, 10_000),
            reconcile_interval_seconds=_integer(values, "RECONCILE_INTERVAL_SECONDS", 1, 86_400),
            reconcile_grace_seconds=_integer(values, "RECONCILE_GRACE_SECONDS", 1, 86_400),
            post_only_mode=_choice(values, "POST_ONLY_MODE", POST_ONLY_MODES),
            self_trade_prevention=_choice(values, "SELF_TRADE_PREVENTION", SELF_TRADE_PREVENTIONS),
            trading_day_end=values["TRADING_DAY_END"],
            trading_symbols=parse_trading_symbols(values["TRADING_SYMBOLS"]),
            trading_shards=parse_trading_shards(values["TRADING_SHARDS"], shard, values["TRADING_ADDRESS"]),
            up_trading_shards=parse_up_trading_shards(values["UP_TRADING_SHARDS"]),
        )

    def address_of(self, service: str) -> str:
        """Where `service` is reached."""
        if service not in SERVICE_NAMES:
            raise ConfigError(f"unknown service {service!r}")
        address: str = getattr(self, f"{service}_address")
        return address

    def listen_address_of(self, service: str) -> str:
        """Where a process serving `service` binds."""
        return self.listen_address or self.address_of(service)

    def require(self, *names: str) -> None:
        """Fail with a clear message when a needed setting is empty."""
        known = {f.name for f in fields(self)}
        for name in names:
            if name not in known:
                raise ConfigError(f"unknown setting {name!r}")
            if not getattr(self, name):
                raise ConfigError(f"{PREFIX}{name.upper()} must be set")


def describe() -> str:
    """A table of every variable, its default and meaning."""
    width = max(len(PREFIX + v.name) for v in VARIABLES)
    lines = ["environment variables:"]
    for v in VARIABLES:
        default = f" (default: {v.default})" if v.default else ""
        lines.append(f"  {PREFIX + v.name:<{width}}  {v.help}{default}")
    return "\n".join(lines)
