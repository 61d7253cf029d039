"""Server reflection that also resolves method names.

The protobuf runtime's descriptor pool (upb) finds messages, enums and services by
name but not methods, so `grpcurl describe identity.v1.AuthService.Login` answered
"Symbol not found". Operators expect it to work: a method resolves to the file of
its service."""

from __future__ import annotations

from typing import Any, cast

from google.protobuf import descriptor, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from identity.api.registration import HandlerRegistry


class MethodAwarePool:
    """The default pool, with methods added to symbol lookup."""

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def FindFileContainingSymbol(self, symbol: str) -> descriptor.FileDescriptor:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method_name = symbol.rpartition(".")
            if not service_name:
                raise
            service = self._pool.FindServiceByName(service_name)  # KeyError when unknown
            if method_name not in service.methods_by_name:
                raise
            return service.file


def enable_reflection(service_names: tuple[str, ...], server: HandlerRegistry) -> None:
    # Duck-typed: the reflection servicer only calls the pool's Find* methods.
    pool = cast(descriptor_pool.DescriptorPool, MethodAwarePool(descriptor_pool.Default()))
    # The grpc.aio servicer, added as `enable_server_reflection` would for a grpc.aio server.
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(  # type: ignore[no-untyped-call]
        reflection.aio.ReflectionServicer(service_names, pool=pool), server.as_server()
    )
