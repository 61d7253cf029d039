"""The server's handler registry (api/registration.py): generic handlers only (grpc.aio
keeps one pending request per registered method and waits on all of them for every call),
one lookup per call, and each method wrapped once."""

from __future__ import annotations

from typing import Any, NamedTuple

from grpc_health.v1 import health, health_pb2_grpc

from identity.api.registration import HandlerRegistry
from identity.v1 import rbac_pb2_grpc


class RecordingServer:
    def __init__(self) -> None:
        self.generic: list[Any] = []
        self.registered: list[str] = []

    def add_generic_rpc_handlers(self, handlers: tuple[Any, ...]) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.registered.append(service)


class Details(NamedTuple):
    method: str
    invocation_metadata: tuple[tuple[str, str], ...] = ()


def test_the_server_gets_one_generic_handler_and_no_registered_methods() -> None:
    server = RecordingServer()
    wrapped: list[str] = []

    def wrap(method: str, handler: Any) -> Any:
        wrapped.append(method)
        return ("wrapped", handler)

    registry = HandlerRegistry(server, wrap)  # duck-typed, as the generated code treats a server
    rbac_pb2_grpc.add_RbacServiceServicer_to_server(rbac_pb2_grpc.RbacServiceServicer(), registry.as_server())
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), registry.as_server())
    assert server.registered == []
    assert server.generic == [registry]

    check = registry.service(Details("/identity.v1.RbacService/CheckPermission"))
    assert check[0] == "wrapped" and check[1].unary_unary is not None
    assert registry.service(Details("/identity.v1.RbacService/CheckPermission")) is check  # wrapped once
    assert registry.service(Details("/grpc.health.v1.Health/Check"))[0] == "wrapped"
    assert registry.service(Details("/identity.v1.RbacService/NoSuchMethod")) is None
    assert registry.service(Details("/identity.v1.RbacService/NoSuchMethod")) is None
    assert wrapped == ["/identity.v1.RbacService/CheckPermission", "/grpc.health.v1.Health/Check"]
