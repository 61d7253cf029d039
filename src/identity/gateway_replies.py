"""What the gateway answers when it answers itself: Envoy's local_reply_config.

Every local reply (unknown path, unreadable request, refused origin, upstream down)
becomes a ``google.rpc.Status`` in JSON with an ErrorInfo reason from
``identity.v1.ErrorReason``, like the server's own errors. The bodies are fixed
texts: nothing of the request (path, query, body, headers) is ever quoted, since
Envoy's default texts echo pieces of it (a token or a key included)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.rpc import code_pb2

_DOMAIN = "identity.v1"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


@dataclass(frozen=True)
class GatewayError:
    http_status: int
    code: int  # google.rpc.Code
    reason: str  # an identity.v1.ErrorReason name without its prefix
    message: str


# The README's gateway error table lists exactly these (a test keeps them in step).
GATEWAY_ERRORS: tuple[GatewayError, ...] = (
    GatewayError(
        400,
        code_pb2.INVALID_ARGUMENT,
        "MALFORMED_REQUEST",
        "the request could not be read: malformed JSON, an unknown query parameter, "
        "or a value of the wrong type or form",
    ),
    GatewayError(
        403, code_pb2.PERMISSION_DENIED, "ORIGIN_NOT_ALLOWED", "requests from this origin are not allowed"
    ),
    GatewayError(404, code_pb2.NOT_FOUND, "ROUTE_NOT_FOUND", "no such method or path"),
    GatewayError(413, code_pb2.INVALID_ARGUMENT, "REQUEST_TOO_LARGE", "the request body is too large"),
    GatewayError(
        415,
        code_pb2.INVALID_ARGUMENT,
        "UNSUPPORTED_MEDIA_TYPE",
        "the request body must be JSON (content-type: application/json)",
    ),
    GatewayError(503, code_pb2.UNAVAILABLE, "BACKEND_UNAVAILABLE", "the identity service is unavailable"),
    GatewayError(
        504, code_pb2.DEADLINE_EXCEEDED, "BACKEND_UNAVAILABLE", "the identity service did not answer in time"
    ),
)
# Any other status Envoy produces itself keeps its status with this body.
FALLBACK = GatewayError(0, code_pb2.UNKNOWN, "GATEWAY_ERROR", "the gateway could not handle the request")


def _body(error: GatewayError) -> dict[str, Any]:
    return {
        "json_format": {
            "code": error.code,
            "message": error.message,
            "details": [{"@type": _ERROR_INFO, "reason": error.reason, "domain": _DOMAIN}],
        },
        "content_type": "application/json",
    }


# Set by the edge filter (deploy/edge.lua) on native gRPC requests, before the
# transcoder rewrites transcoded ones to look the same; never forwarded upstream.
NATIVE_GRPC_HEADER = "x-identity-native-grpc"


def _status(op: str, value: int) -> dict[str, Any]:
    return {
        "status_code_filter": {
            "comparison": {"op": op, "value": {"default_value": value, "runtime_key": "_"}}
        }
    }


def _for_http(status_filter: dict[str, Any]) -> dict[str, Any]:
    # Native gRPC callers keep Envoy's own grpc-status answers (UNIMPLEMENTED for a
    # service this gateway does not expose, ...), which a JSON body would garble.
    not_grpc = {
        "header_filter": {"header": {"name": NATIVE_GRPC_HEADER, "present_match": True, "invert_match": True}}
    }
    return {"and_filter": {"filters": [status_filter, not_grpc]}}


def local_reply_config() -> dict[str, Any]:
    """The HttpConnectionManager's ``local_reply_config`` as a JSON-able mapping."""
    mappers = [
        {"filter": _for_http(_status("EQ", error.http_status)), "body_format_override": _body(error)}
        for error in GATEWAY_ERRORS
    ]
    mappers.append({"filter": _for_http(_status("GE", 400)), "body_format_override": _body(FALLBACK)})
    return {"mappers": mappers}
