"""The one error mapping: domain error -> gRPC status + google.rpc details.

ErrorInfo carries the ErrorReason (value name without the ERROR_REASON_ prefix)
in domain "identity.v1"; invalid input adds BadRequest field violations;
throttling adds RetryInfo. Anything else is INTERNAL with a generic message."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from identity.domain.errors import DomainError, InvalidArgument, Kind, Reason, Throttled
from identity.v1 import errors_pb2

ERROR_DOMAIN = "identity.v1"

_STATUS_BY_KIND: dict[Kind, grpc.StatusCode] = {
    Kind.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Kind.CONFLICT: grpc.StatusCode.ALREADY_EXISTS,
    Kind.PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Kind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Kind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Kind.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    Kind.THROTTLED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Kind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}


def reason_enum(reason: Reason) -> errors_pb2.ErrorReason.ValueType:
    """The ErrorReason number of a reason (the catalogue and the proto are held equal by a test)."""
    return errors_pb2.ErrorReason.Value("ERROR_REASON_" + reason.value)


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _status(code: grpc.StatusCode, message: str, reason: Reason, extra: list[any_pb2.Any]) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=reason.value, domain=ERROR_DOMAIN)
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=message, details=[_pack(info), *extra]
    )
    return rpc_status.to_status(status)


def domain_status(error: DomainError) -> grpc.Status:
    extra: list[any_pb2.Any] = []
    if isinstance(error, InvalidArgument):
        extra.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                        for v in error.violations
                    ]
                )
            )
        )
    if isinstance(error, Throttled):
        extra.append(
            _pack(
                error_details_pb2.RetryInfo(
                    retry_delay=duration_pb2.Duration(seconds=error.retry_after_seconds)
                )
            )
        )
    return _status(_STATUS_BY_KIND[error.kind], error.message, error.reason, extra)


def internal_status() -> grpc.Status:
    return _status(grpc.StatusCode.INTERNAL, "internal error", Reason.INTERNAL, [])


def unimplemented_status() -> grpc.Status:
    return _status(grpc.StatusCode.UNIMPLEMENTED, "method not implemented", Reason.UNIMPLEMENTED, [])
