"""Errors as gRPC statuses with machine-readable details.

Handlers raise :class:`ServiceError`; the server interceptor turns it into a
status whose details carry a ``google.rpc.ErrorInfo`` (reason, domain,
metadata) and, for bad input, a ``google.rpc.BadRequest`` with one field
violation per wrong field. Reasons are :class:`~backbone.reasons.RejectReason`
members (the contract's one list), never prose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from backbone.reasons import RejectReason

DOMAIN = "backbone"
STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One wrong field: its path in the request and what is wrong with it."""

    field: str
    description: str


@dataclass
class ServiceError(Exception):
    """A refusal with a status code, a reason code and a sentence for people."""

    code: grpc.StatusCode
    reason: RejectReason
    message: str
    violations: Sequence[FieldViolation] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A name outside the contract's list is a bug in the caller: fail here, not on the wire.
        self.reason = RejectReason(self.reason)
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason}: {self.message}"

    def to_status(self) -> status_pb2.Status:
        """The google.rpc.Status carrying this error's details."""
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=dict(self.metadata))
        details = [_pack(info)]
        if self.violations:
            bad_request = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in self.violations
                ]
            )
            details.append(_pack(bad_request))
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=details)

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return ((STATUS_DETAILS_KEY, self.to_status().SerializeToString()),)


def _pack(message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def invalid_argument(reason: RejectReason, message: str, *violations: FieldViolation) -> ServiceError:
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, reason, message, violations)


def invalid_field(field_path: str, reason: RejectReason, description: str) -> ServiceError:
    """INVALID_ARGUMENT for one wrong field, the description naming what is wrong."""
    return ServiceError(
        grpc.StatusCode.INVALID_ARGUMENT,
        reason,
        f"{field_path}: {description}",
        (FieldViolation(field_path, description),),
    )


def not_found(reason: RejectReason, message: str, **metadata: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.NOT_FOUND, reason, message, (), metadata)


def failed_precondition(reason: RejectReason, message: str, **metadata: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.FAILED_PRECONDITION, reason, message, (), metadata)


def out_of_range(reason: RejectReason, message: str, **metadata: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.OUT_OF_RANGE, reason, message, (), metadata)


def already_exists(reason: RejectReason, message: str, **metadata: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.ALREADY_EXISTS, reason, message, (), metadata)


def unauthenticated(reason: RejectReason, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.UNAUTHENTICATED, reason, message)


def permission_denied(reason: RejectReason, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.PERMISSION_DENIED, reason, message)


def unavailable(reason: RejectReason, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.UNAVAILABLE, reason, message)


def from_rpc_error(error: grpc.RpcError) -> ServiceError:
    """Rebuild a ServiceError from a failed call, keeping the callee's details.

    Services use this to relay a downstream refusal unchanged; the SDK uses
    it to give callers one typed error.
    """
    code: grpc.StatusCode = (
        error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    )
    message = error.details() if callable(getattr(error, "details", None)) else str(error)
    reason = RejectReason.UNSPECIFIED
    violations: list[FieldViolation] = []
    metadata: dict[str, str] = {}
    trailers: Any = error.trailing_metadata() if callable(getattr(error, "trailing_metadata", None)) else None
    pairs: list[tuple[str, Any]] = [(item[0], item[1]) for item in trailers or ()]
    for key, value in pairs:
        if key != STATUS_DETAILS_KEY:
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = RejectReason.from_name(info.reason) if info.reason else reason
                metadata.update(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                violations.extend(
                    FieldViolation(v.field, v.description) for v in bad_request.field_violations
                )
    return ServiceError(code, reason, message or code.name, violations, metadata)


assert grpc.StatusCode.INVALID_ARGUMENT.value[0] == code_pb2.INVALID_ARGUMENT
