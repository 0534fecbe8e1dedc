"""Ids, their formats and the instrument limits: the one place every service takes them from.

A value is accepted by every service or refused by every service, because each
of them (gateway, risk, trading, settlement) asks this module and nothing else
spells a pattern or a limit. The SQL CHECK constraints of the ledger repeat
some of these rules as a second line of defence; a test runs the same battery
of values through both and requires the same verdicts.

Every pattern matches the WHOLE string (``re.fullmatch``): a trailing newline,
a control character or a surrounding space makes a value invalid, never
silently part of it.

Ids
===

=================  ==========================================================  =======
kind               characters                                                  longest
=================  ==========================================================  =======
account id         letters, digits, ``.`` ``_`` ``-``                          64
source name        (a trading shard's name) letters, digits, ``.`` ``_`` ``-``  64
asset code         upper-case letters and digits                               12
symbol             upper-case letters and digits in parts joined by ``-``      32
                   (``BTC-USD``, ``BTC-USD-PERP``; no empty, leading or
                   trailing part)
order id           printable ASCII without space (``!`` to ``~``)              64
client order id    printable ASCII without space (``!`` to ``~``)              64
deposit id         printable ASCII without space (``!`` to ``~``)              64
command tag        printable ASCII without space (``!`` to ``~``)              64
=================  ==========================================================  =======

Why these: account ids and source names are part of Redis keys (the account id
is the Redis Cluster hash tag, so it can hold no brace) and of ledger
references (``trade:<source>:<id>``), so they keep to a small safe alphabet
without ``:``; the ledger's own accounts (``system:fees``) contain ``:`` and
so can never be mistaken for a customer's. Asset codes and symbols are what
people read on screens and type into grpcurl: upper-case, no look-alikes in
other alphabets. Order, client order and deposit ids are opaque tokens that
callers choose (or receive) and send back: any visible ASCII character, so
UUIDs, ``2024-05-01/fix:42#7`` and the like all fit, but nothing invisible,
no space (an id that differs only in spacing from another is a mistake), and
nothing outside ASCII (look-alike letters).

Order ids name their shard
==========================

The gateway makes every order id as ``<shard>.<32 lower-case hex digits>`` (``trading-1.3f2b...``:
the trading shard that owns the order's symbol, a dot, 128 random bits in hex), so CancelOrder,
GetOrder and every other call about one order reach the order's shard without asking anyone:
:func:`make_order_id` makes one, :func:`shard_of_order_id` reads the shard back (the part before
the LAST dot, so shard names with dots stay unambiguous). An id without that form (bare hex, made
before sharding, or any other token) names no shard and goes to the default shard, the first of
BACKBONE_TRADING_SHARDS. A shard name is therefore at most ``SHARD_NAME_MAX_LENGTH`` (31)
characters, so that the whole id fits the 64 of an order id.

The random part is as unique as a UUID4's (128 random bits from ``os.urandom``, where a UUID4 has
122), so ids never repeat across gateways and restarts and cannot be guessed from one another; the
bits are read from the operating system a block at a time (``ORDER_ID_RANDOM_BLOCK`` ids per read)
rather than with a system call per id, and a forked process never reuses its parent's block. Ids
made before this (``uuid4().hex``, whose 13th digit is always 4) have the same form.

Limits
======

- ``MAX_SCALE`` 18: an asset keeps at most 18 decimal places (the ledger's
  CHECK agrees).
- ``MAX_FEE_BPS`` 1,000 (10%): the largest maker or taker fee rate. A buy
  reserves its notional plus the larger fee rate, so this also bounds that
  headroom.
- ``MAX_BOOK_DEPTH`` 1,000 price levels per side (``DEFAULT_BOOK_DEPTH`` 20).
- ``MAX_STREAM_COMMANDS`` 1,000 commands in one StreamOrders request.
- ``MARKET_DATA_MAX_DEPTH`` 50 price levels per side on StreamMarketData
  (``DEFAULT_MARKET_DATA_DEPTH`` 10), ``MAX_MARKET_DATA_SYMBOLS`` 100 symbols
  on one stream.
- ``MAX_PAGE_TOKEN_LENGTH`` 256 characters: the longest page token a list call
  accepts (the gateway's tokens are about 110; gateway/listing.py).
- Decimal texts (prices, quantities, amounts, tick and lot sizes, instrument
  limits): plain digits with an optional fraction, at most
  ``MAX_DECIMAL_INTEGER_DIGITS`` (19) digits before the point and
  ``MAX_DECIMAL_PLACES`` (18, the largest scale) after it; no sign, exponent,
  leading zero, space or other character. 19 digits hold every int64 amount in
  whole units; within these bounds every product and quotient the services
  compute is exact at ``DECIMAL_PRECISION`` digits.
- Every scaled integer (ticks, lots, minor units, and a buy's notional plus fee
  headroom) is at most ``INT64_MAX``. An instrument is refused when its largest
  order (max_price x max_quantity, plus the larger fee rate) or its largest
  quantity in base minor units would not fit: see
  :func:`backbone.money.derive_instrument`.
"""

from __future__ import annotations

import os
import re
import threading
import unicodedata
from dataclasses import dataclass

from backbone.reasons import RejectReason

INT64_MAX = (1 << 63) - 1

MAX_ID_LENGTH = 64
# An order id is "<shard>.<32 hex>": the shard's name leaves room for the dot and the hex.
ORDER_ID_HEX_LENGTH = 32
SHARD_NAME_MAX_LENGTH = MAX_ID_LENGTH - 1 - ORDER_ID_HEX_LENGTH
MAX_ASSET_CODE_LENGTH = 12
MAX_SYMBOL_LENGTH = 32

MAX_SCALE = 18
MAX_FEE_BPS = 1_000
MAX_BOOK_DEPTH = 1_000
DEFAULT_BOOK_DEPTH = 20
MAX_STREAM_COMMANDS = 1_000
MARKET_DATA_MAX_DEPTH = 50
DEFAULT_MARKET_DATA_DEPTH = 10
MAX_MARKET_DATA_SYMBOLS = 100
MAX_PAGE_TOKEN_LENGTH = 256

MAX_DECIMAL_INTEGER_DIGITS = 19
MAX_DECIMAL_PLACES = MAX_SCALE
# The longest decimal text: all integer digits, the point, all places.
MAX_DECIMAL_LENGTH = MAX_DECIMAL_INTEGER_DIGITS + 1 + MAX_DECIMAL_PLACES
# Enough digits for any product of two bounded decimals divided by the finest increment,
# and for any int64 count of a bounded increment: exact, never rounded.
DECIMAL_PRECISION = 4 * (MAX_DECIMAL_INTEGER_DIGITS + MAX_DECIMAL_PLACES)

_SHOWN = 40  # characters of a refused value quoted back in a message


def _shown(value: str) -> str:
    """`value` quoted for a message: escapes made visible, cut to a readable length."""
    if len(value) <= _SHOWN:
        return repr(value)
    return repr(value[:_SHOWN]) + "..."


def _why_not(value: str) -> str:
    """What is most likely wrong with a value that does not match its pattern (a clause, or "")."""
    if value != value.strip():
        return " (it starts or ends with whitespace)"
    for char in value:
        if unicodedata.category(char).startswith("C"):
            return f" (it contains the control character {char!r})"
        if char.isspace():
            return f" (it contains the space character {char!r})"
        if not char.isascii():
            return f" (it contains {char!r}, which is not ASCII)"
    return ""


@dataclass(frozen=True)
class IdRule:
    """One kind of id: its pattern (a whole-string match), its longest length and its reason."""

    kind: str
    reason: RejectReason
    pattern: re.Pattern[str]
    max_length: int
    rule: str
    example: str

    @property
    def article(self) -> str:
        return "an" if self.kind[0] in "aeiou" else "a"

    def problem(self, value: object) -> str | None:
        """Why `value` is not a valid id of this kind (a sentence without the field name); None if it is."""
        if not isinstance(value, str):
            return f"must be text, not {type(value).__name__}"
        if not value:
            return "is required"
        if len(value) > self.max_length:
            return (
                f"is {len(value)} characters long; at most {self.max_length} are allowed "
                f"({self.article} {self.kind} is {self.rule})"
            )
        if self.pattern.fullmatch(value):
            return None
        return (
            f"{_shown(value)} is not {self.article} {self.kind}{_why_not(value)}: "
            f"{self.article} {self.kind} is {self.rule}, for example {self.example}"
        )

    def is_valid(self, value: object) -> bool:
        return self.problem(value) is None


_NAME_CHARS = "A-Za-z0-9._-"
_NAME_RULE = f"1 to {MAX_ID_LENGTH} letters, digits, '.', '_' or '-'"
_TOKEN_RULE = f"1 to {MAX_ID_LENGTH} printable ASCII characters without spaces ('!' to '~')"

ACCOUNT_ID = IdRule(
    kind="account id",
    reason=RejectReason.INVALID_ACCOUNT_ID,
    pattern=re.compile(f"[{_NAME_CHARS}]{{1,{MAX_ID_LENGTH}}}"),
    max_length=MAX_ID_LENGTH,
    rule=_NAME_RULE,
    example="acc-7f3a9c",
)
SOURCE = IdRule(
    kind="source name",
    reason=RejectReason.INVALID_SOURCE,
    pattern=re.compile(f"[{_NAME_CHARS}]{{1,{MAX_ID_LENGTH}}}"),
    max_length=MAX_ID_LENGTH,
    rule=_NAME_RULE,
    example="trading-0",
)
ASSET_CODE = IdRule(
    kind="asset code",
    reason=RejectReason.INVALID_ASSET_CODE,
    pattern=re.compile(f"[A-Z0-9]{{1,{MAX_ASSET_CODE_LENGTH}}}"),
    max_length=MAX_ASSET_CODE_LENGTH,
    rule=f"1 to {MAX_ASSET_CODE_LENGTH} upper-case letters or digits",
    example="USD",
)
SYMBOL = IdRule(
    kind="symbol",
    reason=RejectReason.INVALID_SYMBOL,
    pattern=re.compile("[A-Z0-9]+(?:-[A-Z0-9]+)*"),
    max_length=MAX_SYMBOL_LENGTH,
    rule=f"1 to {MAX_SYMBOL_LENGTH} characters: upper-case letters and digits in parts joined by '-'",
    example="BTC-USD",
)
ORDER_ID = IdRule(
    kind="order id",
    reason=RejectReason.INVALID_ORDER_ID,
    pattern=re.compile(f"[!-~]{{1,{MAX_ID_LENGTH}}}"),
    max_length=MAX_ID_LENGTH,
    rule=_TOKEN_RULE,
    example="3f2b8c1d9e0a4b5c",
)
CLIENT_ORDER_ID = IdRule(
    kind="client order id",
    reason=RejectReason.INVALID_CLIENT_ORDER_ID,
    pattern=re.compile(f"[!-~]{{1,{MAX_ID_LENGTH}}}"),
    max_length=MAX_ID_LENGTH,
    rule=_TOKEN_RULE,
    example="my-order-42",
)
DEPOSIT_ID = IdRule(
    kind="deposit id",
    reason=RejectReason.INVALID_DEPOSIT_ID,
    pattern=re.compile(f"[!-~]{{1,{MAX_ID_LENGTH}}}"),
    max_length=MAX_ID_LENGTH,
    rule=_TOKEN_RULE,
    example="wire-2024-05-01:17",
)

COMMAND_TAG = IdRule(
    kind="command tag",
    reason=RejectReason.INVALID_TAG,
    pattern=re.compile(f"[!-~]{{1,{MAX_ID_LENGTH}}}"),
    max_length=MAX_ID_LENGTH,
    rule=_TOKEN_RULE,
    example="batch-7/3",
)

RULES = (ACCOUNT_ID, SOURCE, ASSET_CODE, SYMBOL, ORDER_ID, CLIENT_ORDER_ID, DEPOSIT_ID, COMMAND_TAG)


def account_id_problem(value: object) -> str | None:
    """Why `value` is not an account id, or None."""
    return ACCOUNT_ID.problem(value)


def source_problem(value: object) -> str | None:
    """Why `value` is not a source (trading shard) name, or None."""
    return SOURCE.problem(value)


def asset_code_problem(value: object) -> str | None:
    """Why `value` is not an asset code, or None."""
    return ASSET_CODE.problem(value)


def symbol_problem(value: object) -> str | None:
    """Why `value` is not a symbol, or None."""
    return SYMBOL.problem(value)


def order_id_problem(value: object) -> str | None:
    """Why `value` is not an order id, or None."""
    return ORDER_ID.problem(value)


def client_order_id_problem(value: object) -> str | None:
    """Why `value` is not a client order id, or None."""
    return CLIENT_ORDER_ID.problem(value)


def deposit_id_problem(value: object) -> str | None:
    """Why `value` is not a deposit id, or None."""
    return DEPOSIT_ID.problem(value)


def _whole_number_problem(value: object, low: int, high: int, what: str) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return f"must be a whole number, not {type(value).__name__}"
    if not low <= value <= high:
        return f"{value} is not {what}: it must be between {low} and {high}"
    return None


def scale_problem(value: object) -> str | None:
    """Why `value` is not an asset scale (0 to MAX_SCALE decimal places), or None."""
    return _whole_number_problem(value, 0, MAX_SCALE, "a scale")


def fee_bps_problem(value: object) -> str | None:
    """Why `value` is not a fee rate (0 to MAX_FEE_BPS basis points), or None."""
    return _whole_number_problem(value, 0, MAX_FEE_BPS, "a fee rate in basis points")


def book_depth_problem(value: object) -> str | None:
    """Why `value` is not a book depth (1 to MAX_BOOK_DEPTH levels), or None."""
    return _whole_number_problem(value, 1, MAX_BOOK_DEPTH, "a book depth")


def market_data_depth_problem(value: object) -> str | None:
    """Why `value` is not a market data depth (1 to MARKET_DATA_MAX_DEPTH levels), or None."""
    return _whole_number_problem(value, 1, MARKET_DATA_MAX_DEPTH, "a market data depth")


# Order ids made from one read of random bits; the digits of that read not yet used, and where
# the next id's begin. The lock keeps two threads from taking the same digits.
ORDER_ID_RANDOM_BLOCK = 256
_random_hex = ""
_random_at = 0
_random_lock = threading.Lock()


def _forget_random_hex() -> None:
    """In a forked child: drop the parent's unused digits (the parent may still use them)."""
    global _random_hex, _random_at, _random_lock
    _random_hex, _random_at, _random_lock = "", 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_random_hex)


def _random_order_id_hex() -> str:
    """ORDER_ID_HEX_LENGTH random lower-case hex digits, never handed out twice."""
    global _random_hex, _random_at
    with _random_lock:
        start = _random_at
        if start >= len(_random_hex):
            _random_hex = os.urandom(ORDER_ID_RANDOM_BLOCK * ORDER_ID_HEX_LENGTH // 2).hex()
            start = 0
        _random_at = start + ORDER_ID_HEX_LENGTH
        return _random_hex[start : start + ORDER_ID_HEX_LENGTH]


def make_order_id(shard: str) -> str:
    """A new order id naming `shard` (see "Order ids name their shard")."""
    return f"{shard}.{_random_order_id_hex()}"


_HEX_DIGITS = "0123456789abcdef"
# Whether each shard-name part of an order id seen is a source name (a handful: the shards'
# names); bounded, emptied when full.
_SHARD_NAME_VALID: dict[str, bool] = {}
_SHARD_NAMES_REMEMBERED = 1_024
# The shard of each order id read lately: an order's id is read for each of its reports (its
# view, the reported sequences, the relay of a later fill), close together. Bounded, emptied
# when full.
_SHARD_OF_ORDER_ID: dict[str, str | None] = {}
_ORDER_IDS_REMEMBERED = 16_384


def shard_of_order_id(order_id: str) -> str | None:
    """The shard an order id names, or None for an id of another form (made before sharding)."""
    try:
        return _SHARD_OF_ORDER_ID[order_id]
    except KeyError:
        pass
    shard = _read_shard(order_id)
    if len(_SHARD_OF_ORDER_ID) >= _ORDER_IDS_REMEMBERED:
        _SHARD_OF_ORDER_ID.clear()
    _SHARD_OF_ORDER_ID[order_id] = shard
    return shard


def _read_shard(order_id: str) -> str | None:
    shard, dot, tail = order_id.rpartition(".")
    # The tail is ORDER_ID_HEX_LENGTH lower-case hex digits: nothing is left once they are stripped.
    if not dot or len(tail) != ORDER_ID_HEX_LENGTH or tail.strip(_HEX_DIGITS):
        return None
    valid = _SHARD_NAME_VALID.get(shard)
    if valid is None:
        if len(_SHARD_NAME_VALID) >= _SHARD_NAMES_REMEMBERED:
            _SHARD_NAME_VALID.clear()
        valid = _SHARD_NAME_VALID[shard] = source_problem(shard) is None
    return shard if valid else None
