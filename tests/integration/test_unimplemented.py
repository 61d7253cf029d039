"""A method the server does not implement answers UNIMPLEMENTED (HTTP 501 through
Envoy) with the reason UNIMPLEMENTED, never INTERNAL; and every RPC of the contract
is implemented by our servicers."""

from __future__ import annotations

import grpc
import pytest

from identity.api.auth_servicer import AuthServicer
from identity.api.interceptor import ErrorMappingInterceptor
from identity.api.rbac_servicer import RbacServicer
from identity.v1 import auth_pb2, auth_pb2_grpc, rbac_pb2
from tests.support import failure


async def test_a_generated_base_method_answers_unimplemented_not_internal():
    server = grpc.aio.server(interceptors=[ErrorMappingInterceptor()])
    # The generated base class: every method raises NotImplementedError.
    auth_pb2_grpc.add_AuthServiceServicer_to_server(auth_pb2_grpc.AuthServiceServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.VerifyMfa(auth_pb2.VerifyMfaRequest(mfa_ticket="mt_x", code="123456"))
    finally:
        await server.stop(None)
    got = failure(err.value)
    assert (got.code, got.reason) == (grpc.StatusCode.UNIMPLEMENTED, "UNIMPLEMENTED")


@pytest.mark.parametrize(
    ("servicer", "descriptor"),
    [
        (AuthServicer, auth_pb2.DESCRIPTOR.services_by_name["AuthService"]),
        (RbacServicer, rbac_pb2.DESCRIPTOR.services_by_name["RbacService"]),
    ],
)
def test_every_rpc_of_the_contract_is_implemented(servicer, descriptor):
    base = servicer.__mro__[1]
    missing = [m.name for m in descriptor.methods if getattr(servicer, m.name) is getattr(base, m.name)]
    assert missing == []
