"""Request-scoped context shared by the server interceptor and outgoing calls."""

from __future__ import annotations

import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"

request_id_var: ContextVar[str] = ContextVar("request_id", default="")


def new_request_id() -> str:
    return uuid.uuid4().hex


def outgoing_metadata(*extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    """Metadata for a call to another service: the current request id, plus `extra`."""
    request_id = request_id_var.get()
    base: tuple[tuple[str, str], ...] = ((REQUEST_ID_HEADER, request_id),) if request_id else ()
    return base + extra
