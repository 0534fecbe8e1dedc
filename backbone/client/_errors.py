"""The one error type SDK callers see."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import grpc

from backbone.reasons import RejectReason
from backbone.runtime.errors import FieldViolation, from_rpc_error


class BackboneError(Exception):
    """A refused or failed call: gRPC status code, machine-readable reason, a sentence.

    ``violations`` names each wrong field of the request (INVALID_ARGUMENT),
    ``metadata`` carries details such as the ``order_id`` of a duplicate
    client order id or of an order whose outcome is unknown.
    """

    code: grpc.StatusCode
    reason: RejectReason
    message: str
    violations: tuple[FieldViolation, ...]
    metadata: Mapping[str, str]

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: RejectReason,
        message: str,
        violations: tuple[FieldViolation, ...] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code.name} {reason}: {message}")
        self.code = code
        self.reason = RejectReason(reason)
        self.message = message
        self.violations = tuple(violations)
        self.metadata = MappingProxyType(dict(metadata or {}))

    def __repr__(self) -> str:
        return f"BackboneError(code={self.code.name}, reason={self.reason!r}, message={self.message!r})"

    def __reduce__(self) -> tuple[object, ...]:
        return (
            type(self),
            (self.code, self.reason, self.message, self.violations, dict(self.metadata)),
        )

    @property
    def retryable(self) -> bool:
        """True when the same call may succeed later (UNAVAILABLE, RESOURCE_EXHAUSTED)."""
        return self.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> BackboneError:
        """Rebuild the gateway's error (reason, field violations, metadata) from a failed call."""
        service_error = from_rpc_error(error)
        return cls(
            service_error.code,
            service_error.reason,
            service_error.message,
            tuple(service_error.violations),
            dict(service_error.metadata),
        )

    @classmethod
    def invalid_argument(cls, field: str, reason: RejectReason, description: str) -> BackboneError:
        """A bad argument caught before anything was sent."""
        return cls(
            grpc.StatusCode.INVALID_ARGUMENT,
            reason,
            f"{field}: {description}",
            (FieldViolation(field, description),),
        )

    @classmethod
    def not_configured(cls, what: str) -> BackboneError:
        header = "x-admin-key" if what == "admin_key" else "x-api-key"
        return cls(
            grpc.StatusCode.UNAUTHENTICATED,
            RejectReason.MISSING_ADMIN_KEY if what == "admin_key" else RejectReason.MISSING_API_KEY,
            f"this client was connected without {what}=...; the call needs the {header} metadata",
        )


# --- retry policy ---------------------------------------------------------------------------------

_RETRY_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)


def should_retry(error: BackboneError) -> bool:
    """Whether an idempotent call that failed this way is worth another attempt."""
    if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return error.reason == RejectReason.BACKPRESSURE
    if error.code == grpc.StatusCode.UNAVAILABLE and error.reason == RejectReason.UNREACHABLE:
        return False
    return error.code in _RETRY_CODES


def is_duplicate_of_earlier_attempt(error: BackboneError) -> bool:
    """A retried submit refused because an earlier attempt of it got through."""
    return (
        error.code == grpc.StatusCode.ALREADY_EXISTS
        and error.reason == RejectReason.DUPLICATE_CLIENT_ORDER_ID
        and bool(error.metadata.get("order_id"))
    )


def backoff_seconds(attempt: int) -> float:
    """Pause after failed attempt number `attempt` (1-based): 0.1, 0.2, 0.4 ... at most 2 s."""
    return float(min(0.1 * (2 ** (attempt - 1)), 2.0))
