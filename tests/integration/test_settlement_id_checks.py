"""The ledger's SQL CHECK constraints and backbone.ids give the same verdict on every value.

The CHECKs are the second line of defence (a bug that skipped the Python check must still not
store a malformed id); if they disagreed with backbone.ids, a value the services accept would
answer INTERNAL when PostgreSQL refuses it, or a value they refuse could be stored by a script.
Each value is inserted into the real table of a freshly migrated ledger inside a transaction that
is always rolled back, and PostgreSQL's verdict is compared with the ids module's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from backbone import ids
from backbone.runtime.config import Settings
from backbone.runtime.database import migrate, open_pool
from tests.id_cases import bad_values, good_values

pytestmark = pytest.mark.integration

INSERT_CUSTOMER = "INSERT INTO ledger.accounts (account_id, kind) VALUES (%s, 'customer')"
INSERT_ASSET = "INSERT INTO ledger.assets (code, scale) VALUES (%s, %s)"


@pytest.fixture(scope="module")
async def ledger_url(new_database: Callable[[], str]) -> str:
    url = new_database()
    pool = await open_pool(Settings.from_env({"BACKBONE_DATABASE_URL": url}), "id-checks")
    try:
        await migrate(pool, "settlement")
    finally:
        await pool.close()
    return url


@pytest.fixture(scope="module")
def connection(ledger_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(ledger_url) as connection:
        yield connection


def postgres_accepts(connection: psycopg.Connection[tuple[object, ...]], sql: str, *params: object) -> bool:
    """Whether PostgreSQL stores the row; the transaction is rolled back either way."""
    try:
        with connection.transaction():
            connection.execute(sql, params)
            raise psycopg.Rollback()
    except psycopg.errors.CheckViolation:
        return False
    except psycopg.errors.NumericValueOutOfRange:
        return False
    except psycopg.DataError as error:
        # A NUL character cannot be sent as text at all: PostgreSQL refuses it before any CHECK.
        assert "NUL" in str(error), error
        return False
    return True


def disagreements(
    connection: psycopg.Connection[tuple[object, ...]],
    values: list[str],
    verdict: Callable[[str], bool],
    sql: str,
    *extra: object,
) -> list[str]:
    wrong = []
    for value in values:
        ours, theirs = verdict(value), postgres_accepts(connection, sql, value, *extra)
        if ours != theirs:
            wrong.append(
                f"{value!r}: backbone.ids {'accepts' if ours else 'refuses'}, PostgreSQL the opposite"
            )
    return wrong


def test_account_ids_get_the_same_verdict(connection: psycopg.Connection[tuple[object, ...]]) -> None:
    rule = ids.ACCOUNT_ID
    values = good_values(rule) + bad_values(rule)
    assert disagreements(connection, values, rule.is_valid, INSERT_CUSTOMER) == []
    # The battery does exercise the CHECK both ways.
    assert postgres_accepts(connection, INSERT_CUSTOMER, "acc-1")
    assert not postgres_accepts(connection, INSERT_CUSTOMER, "acc-1\n")


def test_asset_codes_get_the_same_verdict(connection: psycopg.Connection[tuple[object, ...]]) -> None:
    rule = ids.ASSET_CODE
    values = good_values(rule) + bad_values(rule)
    assert disagreements(connection, values, rule.is_valid, INSERT_ASSET, 2) == []
    assert postgres_accepts(connection, INSERT_ASSET, "ZZZ", 2)
    assert not postgres_accepts(connection, INSERT_ASSET, "ZZZ\n", 2)


def test_scales_get_the_same_verdict(connection: psycopg.Connection[tuple[object, ...]]) -> None:
    for scale in (
        -(2**31),
        -32769,
        -1,
        0,
        1,
        8,
        ids.MAX_SCALE,
        ids.MAX_SCALE + 1,
        255,
        32767,
        32768,
        2**31 - 1,
    ):
        ours = ids.scale_problem(scale) is None
        assert postgres_accepts(connection, INSERT_ASSET, "SCALE", scale) == ours, scale


_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=1, max_codepoint=127),
        st.sampled_from("\u00a0\u00c4\u00e9\u0130\u0131\u017f\u212a\uff21\u0661\u2028\ufeff"),
    ),
    max_size=70,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_TEXT)
@example(value="a" * 64)
@example(value="a" * 65)
@example(value="\u212a")  # KELVIN SIGN, which case-folds to 'k'
@example(value="\u0131")  # DOTLESS I
def test_any_text_gets_the_same_verdict(
    connection: psycopg.Connection[tuple[object, ...]], value: str
) -> None:
    """Beyond the battery: random ASCII and look-alike letters, as account ids and as asset codes."""
    assert postgres_accepts(connection, INSERT_CUSTOMER, value) == ids.ACCOUNT_ID.is_valid(value), value
    upper = value.upper()[:20]
    assert postgres_accepts(connection, INSERT_ASSET, upper, 2) == ids.ASSET_CODE.is_valid(upper), upper
