"""identity.v1.RbacService: convert the request, call one service, convert the result.

RPCs without a method here answer UNIMPLEMENTED (the generated base class)."""

from __future__ import annotations

from identity.container import Services
from identity.v1 import rbac_pb2_grpc


class RbacServicer(rbac_pb2_grpc.RbacServiceServicer):
    def __init__(self, services: Services) -> None:
        self._s = services
