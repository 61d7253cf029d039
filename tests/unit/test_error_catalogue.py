"""The error catalogue: its reasons are exactly ErrorReason in the proto, and every
error kind reaches the client as one status code, its reason and its details."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from identity.api.errors import ERROR_DOMAIN, domain_status, internal_status, reason_enum
from identity.domain import errors
from identity.domain.errors import DomainError, InvalidArgument, Reason, Throttled
from identity.v1 import errors_pb2

PROTO = Path(__file__).resolve().parents[2] / "protos" / "identity" / "v1" / "errors.proto"
PREFIX = "ERROR_REASON_"

# Written out here, not imported: changing a mapping must change this test too.
EXPECTED_STATUS = {
    errors.Kind.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Kind.CONFLICT: grpc.StatusCode.ALREADY_EXISTS,
    errors.Kind.PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Kind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    errors.Kind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    errors.Kind.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    errors.Kind.THROTTLED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Kind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}


def _proto_reasons() -> set[str]:
    names = set(re.findall(rf"^\s*{PREFIX}([A-Z0-9_]+)\s*=", PROTO.read_text(), re.MULTILINE))
    return names - {"UNSPECIFIED"}


def test_the_catalogue_and_the_proto_name_the_same_reasons() -> None:
    ours = {reason.name for reason in Reason}
    theirs = _proto_reasons()
    assert ours - theirs == set(), "in Reason but not in errors.proto"
    assert theirs - ours == set(), "in errors.proto but not in Reason"
    assert all(reason.value == reason.name for reason in Reason)


def test_the_generated_code_knows_every_reason() -> None:
    for reason in Reason:
        assert errors_pb2.ErrorReason.Name(reason_enum(reason)) == PREFIX + reason.name


def _all_errors(base: type[DomainError] = DomainError) -> list[type[DomainError]]:
    found: list[type[DomainError]] = []
    for sub in base.__subclasses__():
        found += [sub, *_all_errors(sub)]
    return found


def _instance(kind: type[DomainError]) -> DomainError:
    if issubclass(kind, InvalidArgument):
        for arguments in (("some_field", "some_field is wrong"), ("some_field",), ()):
            try:
                return kind(*arguments)
            except TypeError:
                continue
    if issubclass(kind, Throttled):
        return kind(42)
    return kind()


def _decode(status: grpc.Status) -> status_pb2.Status:
    details = dict(status.trailing_metadata)["grpc-status-details-bin"]
    return status_pb2.Status.FromString(details)


def test_every_error_of_the_catalogue_is_walked() -> None:
    # A new error class is picked up by the parametrised test below without listing it.
    assert len(_all_errors()) >= 30


@pytest.mark.parametrize("kind", _all_errors(), ids=lambda k: k.__name__)
def test_each_error_maps_to_its_status_reason_and_details(kind: type[DomainError]) -> None:
    error = _instance(kind)
    status = domain_status(error)
    assert status.code == EXPECTED_STATUS[error.kind]
    assert status.details == error.message and status.details
    decoded = _decode(status)
    assert decoded.code == status.code.value[0]
    infos, bad_requests, retries = [], [], []
    for detail in decoded.details:
        for message_type, bucket in (
            (error_details_pb2.ErrorInfo, infos),
            (error_details_pb2.BadRequest, bad_requests),
            (error_details_pb2.RetryInfo, retries),
        ):
            if detail.Is(message_type.DESCRIPTOR):
                unpacked = message_type()
                detail.Unpack(unpacked)
                bucket.append(unpacked)
    assert [(i.reason, i.domain) for i in infos] == [(error.reason.value, ERROR_DOMAIN)]
    if isinstance(error, InvalidArgument):
        fields = [v.field for b in bad_requests for v in b.field_violations]
        assert fields == [v.field for v in error.violations] and all(fields)
    else:
        assert bad_requests == []
    if isinstance(error, Throttled):
        assert [r.retry_delay.seconds for r in retries] == [42]
    else:
        assert retries == []


def test_internal_is_generic() -> None:
    status = internal_status()
    assert (status.code, status.details) == (grpc.StatusCode.INTERNAL, "internal error")
    (info,) = [d for d in _decode(status).details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    unpacked = error_details_pb2.ErrorInfo()
    info.Unpack(unpacked)
    assert unpacked.reason == "INTERNAL"
