"""Order commands the engine tests share: a new limit order on BTC-USD and a cancel."""

from __future__ import annotations

from backbone.trading.v1 import trading_pb2


def new_order(
    order_id: str, side: int, price: int, lots: int, account: str = "acct-1", **extra: object
) -> trading_pb2.OrderCommand:
    """A NewOrder of `account` on BTC-USD (client order id "c-<order id>"); `extra` sets other fields."""
    fields: dict[str, object] = {
        "order_id": order_id,
        "client_order_id": f"c-{order_id}",
        "account_id": account,
        "symbol": "BTC-USD",
        "side": side,
        "price_ticks": price,
        "quantity_lots": lots,
    }
    fields.update(extra)
    return trading_pb2.OrderCommand(new_order=trading_pb2.NewOrder(**fields))  # type: ignore[arg-type]


def cancel_order(order_id: str, account: str = "acct-1") -> trading_pb2.OrderCommand:
    return trading_pb2.OrderCommand(
        cancel_order=trading_pb2.CancelOrder(order_id=order_id, account_id=account)
    )
