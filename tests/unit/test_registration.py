"""Servicers are registered as generic handlers only (api/registration.py): grpc.aio keeps
one pending request per registered method and waits on all of them for every call."""

from __future__ import annotations

from typing import Any, NamedTuple

from grpc_health.v1 import health, health_pb2_grpc

from identity.api.registration import GenericHandlersOnly
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


def resolve(server: RecordingServer, method: str) -> Any:
    for handler in server.generic:
        found = handler.service(Details(method))
        if found is not None:
            return found
    return None


def test_generated_registration_adds_generic_handlers_and_no_registered_methods() -> None:
    server = RecordingServer()
    registrar = GenericHandlersOnly(server)  # duck-typed, as the generated code treats a server
    as_server = registrar.as_server()
    rbac_pb2_grpc.add_RbacServiceServicer_to_server(rbac_pb2_grpc.RbacServiceServicer(), as_server)
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), as_server)
    assert server.registered == []
    assert resolve(server, "/identity.v1.RbacService/CheckPermission") is not None
    assert resolve(server, "/grpc.health.v1.Health/Check") is not None
    assert resolve(server, "/identity.v1.RbacService/NoSuchMethod") is None
