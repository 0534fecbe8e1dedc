"""The client-order-id claim in Redis: its key and how long it lives.

A claim says which order of an account holds a client order id: the key
``gw:{<account>}:coid:<client order id>`` holds that order's id, for
CLIENT_ORDER_ID_TTL_SECONDS. Two services write it, so it is spelled here, in
the shared package, once: risk claims the id in the same atomic step as the
order's reservation (risk/lua/reserve.lua; the key shares the account's hash
tag, so one script touches one slot), and the gateway claims, repoints and
frees it on its one-by-one path (gateway/order_saga.py). The name and the time
to live are those the gateway used alone before risk took the claim over, so
gateways and risk processes of either version agree on them. Trading's journal
stays the authority on client order ids; the claim is the fast path in front
of it.
"""

from __future__ import annotations

CLIENT_ORDER_ID_TTL_SECONDS = 604_800  # 7 days


def client_order_id_key(account_id: str, client_order_id: str) -> str:
    """Redis key of a claimed client order id, hash-tagged by account."""
    return f"gw:{{{account_id}}}:coid:{client_order_id}"
