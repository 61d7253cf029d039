#!/usr/bin/env python3
"""A runnable example peer: a grpc.aio "catalogue" service protected with identity.peer.

    pip install 'identity[peer]'
    export IDENTITY_PEER_SERVICE_KEY=sk_...   # identity service-keys create catalogue
    scripts/peer_example.py --identity 127.0.0.1:50051 --listen 127.0.0.1:50061

It serves two methods (messages are google.protobuf.StringValue, so it needs no protos of
its own):

- /cinema.Catalogue/WhoAmI        any valid access token; answers the user id
- /cinema.Catalogue/PublishFilm   needs the permission catalog.films.publish

Call them with `authorization: Bearer <access token>`. Tokens are verified locally
(identity's JWKS) and refused as soon as their session ends (the revocation feed); with
--on-stale validate, tokens are checked with ValidateToken while the feed is stale,
otherwise they are refused (UNAVAILABLE)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from typing import Any

import grpc
from google.protobuf import wrappers_pb2

from identity.peer import (
    AsyncPermissionClient,
    GrpcJwks,
    KeySet,
    OnStale,
    PeerAuthInterceptor,
    RevocationFeed,
    TokenVerifier,
    current_principal,
    require_permission,
)


class Catalogue:
    async def WhoAmI(self, request: wrappers_pb2.StringValue, context: Any) -> wrappers_pb2.StringValue:
        principal = current_principal()
        return wrappers_pb2.StringValue(value=f"{principal.user_id} amr={','.join(principal.amr)}")

    @require_permission("catalog.films.publish")
    async def PublishFilm(self, request: wrappers_pb2.StringValue, context: Any) -> wrappers_pb2.StringValue:
        return wrappers_pb2.StringValue(value=f"published {request.value}")


def handlers(catalogue: Catalogue) -> grpc.GenericRpcHandler:
    def unary(method: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            method,
            request_deserializer=wrappers_pb2.StringValue.FromString,
            response_serializer=wrappers_pb2.StringValue.SerializeToString,
        )

    return grpc.method_handlers_generic_handler(
        "cinema.Catalogue", {"WhoAmI": unary(catalogue.WhoAmI), "PublishFilm": unary(catalogue.PublishFilm)}
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--identity", default="127.0.0.1:50051", help="identity's gRPC address")
    parser.add_argument("--feed", help="where to follow the revocation feed (default: --identity)")
    parser.add_argument("--listen", default="127.0.0.1:50061")
    parser.add_argument("--issuer", default="identity")
    parser.add_argument("--audience", action="append", default=None)
    parser.add_argument("--staleness", type=float, default=5.0, help="seconds without the feed")
    parser.add_argument("--on-stale", choices=[m.value for m in OnStale], default=OnStale.FAIL_CLOSED.value)
    args = parser.parse_args()
    service_key = os.environ["IDENTITY_PEER_SERVICE_KEY"]

    # Sync channels for the verifier's background work (JWKS, feed, ValidateToken), an
    # aio channel for the permission checks made inside calls.
    identity_channel = grpc.insecure_channel(args.identity)
    feed_channel = grpc.insecure_channel(args.feed or args.identity)
    feed = RevocationFeed(feed_channel, service_key=service_key, staleness=args.staleness).start()
    verifier = TokenVerifier(
        KeySet(GrpcJwks(identity_channel)),
        issuer=args.issuer,
        audiences=args.audience or ["cinema"],
        feed=feed,
        on_stale=OnStale(args.on_stale),
        validate_channel=identity_channel,
    )
    permissions = AsyncPermissionClient(grpc.aio.insecure_channel(args.identity), service_key=service_key)

    server = grpc.aio.server(interceptors=[PeerAuthInterceptor(verifier, permissions)])
    server.add_generic_rpc_handlers((handlers(Catalogue()),))
    port = server.add_insecure_port(args.listen)
    await server.start()
    feed.wait_fresh(timeout=10)
    print(f"listening {port} feed={'current' if feed.fresh() else 'stale'}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)
    verifier.close()


if __name__ == "__main__":
    asyncio.run(main())
