#!/usr/bin/env python3
"""The ceiling: a bare grpc.aio server answering every unary method with a fixed,
pre-serialised response (a CheckPermission answer) and doing nothing else (no
parsing, no interceptor): the cost of Python gRPC alone, for any RPC of ours.

Run several on one port (SO_REUSEPORT) like `identity serve`; on SIGTERM each prints
the number of calls it answered, as JSON, so the benchmark counts outcomes on the
server side."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

import grpc

from identity.v1 import rbac_pb2

RESPONSE = rbac_pb2.CheckPermissionResponse(
    allowed=True, reason=rbac_pb2.DECISION_REASON_GRANTED, granted_by=["bench reader"]
).SerializeToString()


class Echo(grpc.GenericRpcHandler):
    def __init__(self) -> None:
        self.calls = 0
        self.handler = grpc.unary_unary_rpc_method_handler(self.answer)

    async def answer(self, request: bytes, context: Any) -> bytes:
        self.calls += 1
        return RESPONSE

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        return self.handler


async def main(listen: str) -> None:
    echo = Echo()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    server.add_generic_rpc_handlers((echo,))
    if server.add_insecure_port(listen) == 0:
        raise SystemExit(f"cannot listen on {listen}")
    await server.start()
    print(json.dumps({"event": "serving", "listen": listen}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)
    print(json.dumps({"event": "echo_totals", "calls": echo.calls}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:50151")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(args.listen))
    except ImportError:  # pragma: no cover
        asyncio.run(main(args.listen))
    sys.exit(0)
