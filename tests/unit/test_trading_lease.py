"""The shard lease's key and name, and the checks every journal row read back passes (no database:
tests/integration/test_trading_lease.py has the lease and the journal against PostgreSQL)."""

from __future__ import annotations

import pytest

from backbone.runtime.server import StartRefused
from backbone.trading.v1 import trading_pb2
from trading.journal import JournalUnreadable, record_of
from trading.lease import lease_application_name, lease_key


def test_each_shard_has_its_own_64_bit_key_the_same_in_every_process() -> None:
    keys = {lease_key(f"trading-{number}") for number in range(1000)}
    assert len(keys) == 1000
    assert all(-(2**63) <= key < 2**63 for key in keys)  # a PostgreSQL bigint
    # Fixed by the name alone (no per-process hash seed), and never to change: an old and a new
    # version of trading side by side (a rolling update) must exclude each other.
    assert lease_key("trading-0") == -8052361236864189608


def test_the_lease_session_names_its_process_and_host_within_postgres_limit() -> None:
    assert lease_application_name(4242, "db-host") == "backbone-trading-lease pid=4242 host=db-host"
    long = lease_application_name(4242, "a-very-long-pod-name-" * 5)
    assert long.startswith("backbone-trading-lease pid=4242 host=a-very-long-pod")
    assert len(long.encode()) == 63  # PostgreSQL keeps no more of an application name


def record(sequence: int) -> trading_pb2.JournalRecord:
    journaled = trading_pb2.JournalRecord(sequence=sequence, timestamp_ns=1)
    journaled.cancel_order.order_id = "o1"
    return journaled


def test_a_row_is_read_back_only_as_the_record_it_says_it_is() -> None:
    payload = record(7).SerializeToString()
    assert record_of("shard-a", 7, "cancel_order", payload) == record(7)
    mismatch = "its payload is record 7 of kind 'cancel_order', its row says"
    for sequence, kind, bad_payload, why in (
        (7, "cancel_order", b"\x08", "its payload does not parse (Error parsing message"),
        (8, "cancel_order", payload, f"{mismatch} 8 of kind 'cancel_order'"),
        (7, "new_order", payload, f"{mismatch} 7 of kind 'new_order'"),
        (7, "cancel_order", b"", "its payload is record 0 of kind None, its row says 7 of kind"),
    ):
        with pytest.raises(JournalUnreadable) as refusal:
            record_of("shard-a", sequence, kind, bad_payload)
        assert (refusal.value.shard, refusal.value.sequence) == ("shard-a", sequence)
        assert refusal.value.why.startswith(why), refusal.value.why
        # `backbone serve` reports it as a refusal to start, not a crash.
        assert isinstance(refusal.value, StartRefused)
        assert str(refusal.value).startswith(
            f"the journal of shard 'shard-a' cannot be replayed at sequence {sequence}: "
        )
