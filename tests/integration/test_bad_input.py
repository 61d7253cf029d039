"""Bad input at the transport's edge: bytes that are not a message of the method's
type, messages and metadata over their limits, tokens with whitespace around them.
Each is answered with a status and a reason, the same way every time; none is
UNKNOWN or INTERNAL and none quotes the parser."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor

from identity.v1 import auth_pb2, errors_pb2, rbac_pb2
from tests.support import failure

METHODS = [
    (service, method)
    for module, name in ((auth_pb2, "AuthService"), (rbac_pb2, "RbacService"))
    for service in [module.DESCRIPTOR.services_by_name[name]]
    for method in service.methods
]
IDS = [f"{s.name}.{m.name}" for s, m in METHODS]
LIMIT = 65536  # IDENTITY_MAX_MESSAGE_BYTES, the default the suite runs with


def _raw(channel: grpc.aio.Channel, service, method):
    return channel.unary_unary(
        f"/{service.full_name}/{method.name}",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )


def _bad_utf8(method) -> bytes | None:
    """The method's first string field, holding bytes that are not UTF-8."""
    for field in method.input_type.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            tag = (field.number << 3) | 2
            return bytes([tag]) if tag < 128 else None
    return None


MALFORMED = {
    "truncated": b"\x0a\x05ab",
    "field number 0": b"\x00\x01",
    "overlong varint": b"\x08" + b"\xff" * 10 + b"\x01",
    "bad wire type": b"\x0f",
}


async def _refusal(call, payload: bytes, metadata=()) -> tuple:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(payload, metadata=metadata, timeout=10)
    got = failure(err.value)
    return got.code, got.reason, got.message


@pytest.mark.parametrize(("service", "method"), METHODS, ids=IDS)
async def test_malformed_bytes_are_invalid_argument_with_a_reason(channel, service, method) -> None:
    call = _raw(channel, service, method)
    payloads = dict(MALFORMED)
    prefix = _bad_utf8(method)
    if prefix is not None:
        payloads["string not utf-8"] = prefix + b"\x03\xff\xfe\xfd"
    for what, payload in payloads.items():
        assert await _refusal(call, payload) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "MALFORMED_REQUEST",
            "malformed request",
        ), what


async def test_a_message_over_the_limit_is_refused_with_a_reason_every_time(channel) -> None:
    service, method = METHODS[0]
    call = _raw(channel, service, method)
    # A valid message (one long unknown field) just over the limit.
    over = b"\xfa\x3f" + _varint(LIMIT) + b"x" * LIMIT
    for _ in range(5):
        assert await _refusal(call, over) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "REQUEST_TOO_LARGE",
            f"request is larger than {LIMIT} bytes",
        )
    # Far beyond it the transport refuses it unread: the same status.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(b"x" * (5 * LIMIT), timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


async def test_metadata_and_token_limits_answer_the_same_every_time(auth) -> None:
    request = auth_pb2.ListSessionsRequest()
    # A token over its limit (4096 characters) but metadata within its own: TOKEN_INVALID.
    for size in (5_000, 9_000, 12_000, 15_000):
        for _ in range(5):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await auth.ListSessions(request, metadata=(("authorization", "Bearer " + "a" * size),))
            got = failure(err.value)
            assert (got.code, got.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID"), size
    # Metadata over 16 KiB in all: the transport refuses it, every time.
    for _ in range(10):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await auth.ListSessions(request, metadata=(("authorization", "Bearer " + "a" * 17_000),))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("padded", [" {}", "{} ", "\t{}", "{}\n", "{} x"])
async def test_a_token_is_taken_exactly_as_sent_on_every_path(auth, rbac, account, padded) -> None:
    token = padded.format(account.access_token)
    if token.isprintable():  # a header cannot carry a tab or a newline at all
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await auth.ListSessions(
                auth_pb2.ListSessionsRequest(), metadata=(("authorization", "Bearer " + token),)
            )
        assert (failure(err.value).code, failure(err.value).reason) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "TOKEN_INVALID",
        )
    validated = await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=token))
    assert (validated.valid, validated.reason) == (False, errors_pb2.ERROR_REASON_TOKEN_INVALID)
    checked = await rbac.CheckPermission(
        rbac_pb2.CheckPermissionRequest(
            subject=rbac_pb2.Subject(access_token=token), permission="catalog.films.read"
        ),
        metadata=account.metadata,
    )
    assert (checked.allowed, checked.reason) == (False, rbac_pb2.DECISION_REASON_TOKEN_INVALID)
    # The same token, exactly as issued, is good on each of them.
    assert (await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=account.access_token))).valid
    await auth.ListSessions(auth_pb2.ListSessionsRequest(), metadata=account.metadata)
