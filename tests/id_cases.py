"""Values every id rule is tried with: good ones, wrong ones, and hostile variants of good ones.

Shared by the unit tests of backbone/ids.py and the test that runs the same values through the
ledger's SQL CHECK constraints, so both see exactly the same battery.
"""

from __future__ import annotations

from backbone import ids
from backbone.ids import IdRule

# Characters that must never be part of an id, each appended, prepended or inserted in a good one.
HOSTILE_CHARACTERS = (
    "\n",  # `$` matches before a final newline; Decimal() and str.strip() drop it
    "\r",
    "\t",
    " ",
    "\x00",
    "\x1b",
    "\x7f",
    "\x85",  # NEXT LINE
    "\u00a0",  # NO-BREAK SPACE
    "\u200b",  # ZERO WIDTH SPACE
    "\u2028",  # LINE SEPARATOR
    "\u3000",  # IDEOGRAPHIC SPACE
    "\ufeff",  # BYTE ORDER MARK
)


def hostile_variants(good: str, rule: IdRule) -> list[str]:
    """Wrong values made from a good one: hostile characters around and inside it, too long, empty."""
    variants = [""]
    for char in HOSTILE_CHARACTERS:
        variants += [good + char, char + good, good[:1] + char + good[1:]]
    variants += [good + "\r\n", " " + good + " ", good + "\n\n"]
    variants.append((good * (rule.max_length // len(good) + 2))[: rule.max_length + 1])
    variants.append(good * 1000)
    return variants


_NAME_GOOD = ["a", "Z", "0", "acc-7f3a9c", "A.b_c-9", "-", "...", "x" * ids.MAX_ID_LENGTH]
_NAME_BAD = ["system:fees", "a b", "a/b", "a:b", "{acct}", "caf\u00e9", "\uff21", "a@b", "a+b"]
_TOKEN_GOOD = [
    "a",
    "!",
    "~",
    "x" * ids.MAX_ID_LENGTH,
    "2024-05-01/fix:42#7",
    "{}[]*?'\"\\`",
    "3f2b8c1d9e0a4b5c8d7e6f5a4b3c2d1e",
]
_TOKEN_BAD = ["a b", "caf\u00e9", "\uff21", "\u0661", "x" * (ids.MAX_ID_LENGTH + 1)]

# rule -> (good values, wrong values other than the hostile variants of the good ones)
CASES: dict[IdRule, tuple[list[str], list[str]]] = {
    ids.ACCOUNT_ID: (_NAME_GOOD, _NAME_BAD),
    ids.SOURCE: (_NAME_GOOD, _NAME_BAD),
    ids.ASSET_CODE: (
        ["USD", "X1", "0", "A" * ids.MAX_ASSET_CODE_LENGTH, "USDT0"],
        ["usd", "Usd", "US-D", "US.D", "US_D", "A" * 13, "\u00c4", "\uff35SD", "\u0661", "USD$"],
    ),
    ids.SYMBOL: (
        ["BTC-USD", "A", "9", "BTC-USD-PERP", "ES-2412", "1-2-3", "A" * ids.MAX_SYMBOL_LENGTH],
        [
            "btc-usd",
            "Btc-USD",
            "-BTC",
            "BTC-",
            "-",
            "BTC--USD",
            "BTC/USD",
            "BTC_USD",
            "BTC.USD",
            "BTC USD",
            "A" * (ids.MAX_SYMBOL_LENGTH + 1),
            "\u00c4-USD",
        ],
    ),
    ids.ORDER_ID: (_TOKEN_GOOD, _TOKEN_BAD),
    ids.CLIENT_ORDER_ID: (_TOKEN_GOOD, _TOKEN_BAD),
    ids.DEPOSIT_ID: (_TOKEN_GOOD, _TOKEN_BAD),
    ids.COMMAND_TAG: (_TOKEN_GOOD, _TOKEN_BAD),
}


def good_values(rule: IdRule) -> list[str]:
    return list(CASES[rule][0])


def bad_values(rule: IdRule) -> list[str]:
    """The wrong values of `rule`, including every hostile variant of its first good value and
    of a longer one, without duplicates and without values that happen to be good."""
    good, bad = CASES[rule]
    values = list(bad)
    for sample in (good[0], good[1] if len(good) > 1 else good[0]):
        values += hostile_variants(sample, rule)
    seen: set[str] = set()
    unique = []
    for value in values:
        if value not in seen and value not in good:
            seen.add(value)
            unique.append(value)
    return unique
