"""BinaryCopy (backbone/runtime/binary_copy.py) against a real PostgreSQL: every value of each
column type it is used with comes back as written, in the caller's transaction, and a row whose
value does not fit its column writes nothing."""

from __future__ import annotations

import psycopg
import pytest

from backbone.runtime.binary_copy import BinaryCopy

pytestmark = pytest.mark.integration

_TABLE = "CREATE TEMPORARY TABLE copied (name text, big bigint, small smallint, data bytea)"
_COPY = BinaryCopy(
    "COPY copied (name, big, small, data) FROM STDIN (FORMAT BINARY)", ("text", "int8", "int2", "bytea")
)
_ROWS = [
    ("", 0, 0, b""),
    ("é ü 漢字 \\ \t \n , \"'", -(1 << 63), -(1 << 15), bytes(range(256))),
    ("x" * 100_000, (1 << 63) - 1, (1 << 15) - 1, b"\x00\\\n" * 50_000),
]


async def test_rows_come_back_as_written_in_the_callers_transaction(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        await connection.execute(_TABLE)
        async with connection.transaction(force_rollback=True):
            assert await _COPY.write(connection, _ROWS) == len(_ROWS)
            cursor = await connection.execute("SELECT name, big, small, data FROM copied ORDER BY big")
            assert await cursor.fetchall() == sorted(_ROWS, key=lambda row: row[1])
        cursor = await connection.execute("SELECT count(*) FROM copied")
        assert await cursor.fetchone() == (0,)  # rolled back with the caller's transaction
        assert await _COPY.write(connection, []) == 0


@pytest.mark.parametrize(
    ("row", "error"),
    [
        (("int2 too big", 2, 1 << 15, b"b"), ValueError),  # psycopg alone would write -32768
        (("int2 too small", 2, -(1 << 15) - 1, b"b"), ValueError),
        (("int8 too big", 1 << 63, 1, b"b"), OverflowError),
    ],
)
async def test_a_value_that_does_not_fit_its_column_writes_nothing(
    database_url: str, row: tuple[object, ...], error: type[Exception]
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        await connection.execute(_TABLE)
        with pytest.raises(error):
            await _COPY.write(connection, [("fits", 1, 1, b"a"), row])
        cursor = await connection.execute("SELECT count(*) FROM copied")
        assert await cursor.fetchone() == (0,)


def test_only_a_binary_copy_is_taken() -> None:
    with pytest.raises(ValueError, match="not a binary COPY"):
        BinaryCopy("COPY copied (name) FROM STDIN", ("text",))
