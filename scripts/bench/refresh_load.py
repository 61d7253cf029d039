#!/usr/bin/env python3
"""Refresh load: chains of rotations, each call presenting the token the previous one
returned (h2load repeats one body, and a refresh token works once).

Reads a JSON list of live refresh tokens, runs one chain per token for --seconds over
--connections connections (so the kernel spreads them across workers), writes the
chains' last tokens back (each still live, for the next round) and prints one JSON
line: calls done, succeeded, failures by status, elapsed seconds, this process's CPU
seconds, p50/p99 in ms."""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from collections import Counter
from pathlib import Path

import grpc

from identity.v1 import auth_pb2, auth_pb2_grpc


async def run(address: str, tokens: list[str], seconds: float, connections: int) -> dict[str, object]:
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(address, options=options) for _ in range(connections)]
    stubs = [auth_pb2_grpc.AuthServiceStub(channel) for channel in channels]
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    finals: list[str | None] = list(tokens)
    deadline = time.monotonic() + seconds

    async def chain(slot: int) -> None:
        stub = stubs[slot % len(stubs)]
        token = tokens[slot]
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                reply = await stub.Refresh(auth_pb2.RefreshRequest(refresh_token=token), timeout=10)
            except grpc.aio.AioRpcError as error:
                failures[error.code().name] += 1
                finals[slot] = None  # the token's state is unknown now: drop the chain
                return
            latencies.append((time.perf_counter() - started) * 1000)
            token = reply.refresh_token
        finals[slot] = token

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    await asyncio.gather(*(chain(slot) for slot in range(len(tokens))))
    elapsed = time.monotonic() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    for channel in channels:
        await channel.close()
    latencies.sort()

    def pct(fraction: float) -> float:
        return (
            latencies[min(len(latencies) - 1, round(fraction * (len(latencies) - 1)))] if latencies else 0.0
        )

    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "done": len(latencies) + sum(failures.values()),
        "succeeded": len(latencies),
        "failures": dict(failures),
        "seconds": elapsed,
        "client_cpu_seconds": cpu,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "tokens": [t for t in finals if t is not None],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--tokens", type=Path, required=True, help="JSON list of refresh tokens (rewritten)")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    tokens = json.loads(args.tokens.read_text())
    try:
        import uvloop

        result = uvloop.run(run(args.address, tokens, args.seconds, args.connections))
    except ImportError:  # pragma: no cover
        result = asyncio.run(run(args.address, tokens, args.seconds, args.connections))
    args.tokens.write_text(json.dumps(result.pop("tokens")))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
