"""The request deserializer guard: what grpc would answer UNKNOWN (a parser's
exception) becomes a refusal the wrapped method answers with a reason."""

from __future__ import annotations

from identity.api.interceptor import _Refused, guard_deserializer
from identity.domain.errors import Reason
from identity.v1 import auth_pb2

LOGIN = auth_pb2.LoginRequest.FromString
LOGOUT = auth_pb2.LogoutRequest.FromString


def _reason(result: object) -> Reason | None:
    return result.error.reason if isinstance(result, _Refused) else None


def test_malformed_bytes_are_refused_as_malformed() -> None:
    guard = guard_deserializer(LOGIN, 1024)
    for raw in (b"\x0a\x05ab", b"\x00\x01", b"\x08" + b"\xff" * 10 + b"\x01", b"\x0a\x02\xff\xfe", b"\x0f"):
        assert _reason(guard(raw)) == Reason.MALFORMED_REQUEST, raw


def test_field_zero_is_refused_in_a_message_without_fields_too() -> None:
    assert _reason(guard_deserializer(LOGOUT, 1024)(b"\x00\x01")) == Reason.MALFORMED_REQUEST
    assert isinstance(guard_deserializer(LOGOUT, 1024)(b"\x08\x01"), auth_pb2.LogoutRequest)  # unknown, fine


def test_size_is_checked_before_parsing() -> None:
    message = auth_pb2.LoginRequest(login="ann", password="x" * 100).SerializeToString()
    assert _reason(guard_deserializer(LOGIN, len(message) - 1)(message)) == Reason.REQUEST_TOO_LARGE
    assert guard_deserializer(LOGIN, len(message))(message).login == "ann"
