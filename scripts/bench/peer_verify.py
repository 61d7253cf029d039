#!/usr/bin/env python3
"""Token verification for peers, against bare PyJWT, in one run.

    .venv/bin/python scripts/bench/peer_verify.py        (make bench-peer)

With PostgreSQL and Redis on 127.0.0.1 as for the tests, it:

1. creates a throw-away database, migrates it, seeds a user with a live session (its
   access token) and a service key;
2. starts 2 `identity serve` processes sharing one port (IDENTITY_GRPC_REUSEPORT=1);
3. alternates, for --rounds rounds:
   - bare PyJWT: `jwt.decode(token, key, algorithms=["RS256"], audience=..., issuer=...)`
     with the RSA key already loaded, in a loop on one core (the baseline), and
     identity.peer: `TokenVerifier.verify(token)` with the revocation feed attached and
     current (subscribed to the servers with the service key), in the same loop, the two
     taking turns every 0.25 s so that the machine's drift hits both alike;
   - ValidateToken: h2load (Debian nghttp2-client) against the 2 server processes,
     checking afterwards that no call failed on the server side and that real calls
     answer valid;
4. prints calls/s (median of the rounds) and the ratios to the baseline.

Targets (issue 13): identity.peer >= 0.9 of bare PyJWT; ValidateToken >= 0.5 of it.
Exit status: 0 when met, 2 when a target is missed, 1 when an answer is wrong. Run it on an
otherwise idle machine."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import jwt

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_permission as common

from identity.config import Secret, Settings
from identity.container import build_services
from identity.domain.models import ClientInfo
from identity.peer import TokenVerifier
from identity.peer.jwks import parse_keys
from identity.store.migrate import upgrade
from identity.v1 import auth_pb2, auth_pb2_grpc

METHOD = "/identity.v1.AuthService/ValidateToken"
PEER_TARGET = 0.9
VALIDATE_TARGET = 0.5


async def seed(settings: Settings) -> tuple[str, str]:
    """(an access token of a live session, a service key)."""
    services = await build_services(settings)
    try:
        await services.keys.ensure_ring()
        await services.keys.reload()
        login = f"bench-{secrets.token_hex(4)}"
        await services.auth.register(login, "bench password 1234", "")
        issued = await services.auth.login(login, "bench password 1234", ClientInfo(None, "bench"))
        key = await services.service_keys.create("bench-peer")
        return issued.access_token, key.secret  # type: ignore[union-attr]
    finally:
        await services.close()


def interleaved(
    calls: dict[str, Callable[[], object]], seconds: float, slice_seconds: float = 0.25
) -> dict[str, float]:
    """Calls per second of each, run in turns of `slice_seconds` for `seconds` each, so that
    drift in the machine's speed (other processes) hits them alike."""
    done = dict.fromkeys(calls, 0)
    spent = dict.fromkeys(calls, 0.0)
    while min(spent.values()) < seconds:
        for name, call in calls.items():
            count, started = 0, time.perf_counter()
            deadline = started + slice_seconds
            while True:
                for _ in range(50):
                    call()
                count += 50
                now = time.perf_counter()
                if now >= deadline:
                    break
            done[name] += count
            spent[name] += now - started
    return {name: done[name] / spent[name] for name in calls}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=2, help="identity serve processes")
    parser.add_argument("--seconds", type=float, default=5, help="length of each measured run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("IDENTITY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("IDENTITY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    binary = common.ensure_h2load()
    busy = common.cpu_busy()
    if busy > 0.25:
        print(f"warning: the CPUs are {busy:.0%} busy before we start; the figures will be noisy", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="identity-bench-peer-"))
    with common.scratch_database(args.admin_url, args.keep) as database_url:
        upgrade(database_url)
        settings = Settings(
            database_url=database_url,
            redis_url=args.redis_url,
            redis_prefix=f"identity-bench-seed-{os.getpid()}:",
            secret_key=Secret(common.env_secret()),
            bcrypt_rounds=4,
        )
        token, service_key = asyncio.run(seed(settings))
        side = common.start_identity(args.processes, workdir, database_url, args.redis_url)
        address = f"127.0.0.1:{side.port}"
        body = workdir / "validate.bin"
        body.write_bytes(
            common.grpc_frame(auth_pb2.ValidateTokenRequest(access_token=token).SerializeToString())
        )
        headers = ["content-type: application/grpc", "te: trailers"]
        channel = grpc.insecure_channel(address)
        verifier: TokenVerifier | None = None
        try:
            common.wait_serving(side.processes)
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            jwks = stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=10)
            header = jwt.get_unverified_header(token)
            public = parse_keys(
                [{"kty": k.kty, "kid": k.kid, "alg": k.alg, "n": k.n, "e": k.e} for k in jwks.keys]
            )
            key = public[header["kid"]]
            # A staleness bound well above the 5 s default: on a machine loaded by other work the
            # feed's heartbeats can come late, and a stale feed would end the run (FeedStale).
            verifier = TokenVerifier.connect(
                channel,
                issuer=settings.issuer,
                audiences=settings.audiences,
                service_key=service_key,
                staleness=30,
            )
            assert verifier.feed is not None
            if not verifier.feed.wait_fresh(10):
                raise SystemExit("the revocation feed did not become current")

            def bare() -> object:
                return jwt.decode(
                    token, key, algorithms=["RS256"], audience=settings.audiences[0], issuer=settings.issuer
                )

            def peer() -> object:
                return verifier.verify(token)  # type: ignore[union-attr]

            bare()
            peer()
            rates: dict[str, list[float]] = {"bare": [], "peer": [], "validate": []}
            print(f"measuring ({args.rounds} rounds of {args.seconds:g} s) ...", flush=True)
            common.h2load(binary, f"http://{address}{METHOD}", body, headers,
                          seconds=2, clients=args.clients, streams=args.streams)  # fmt: skip
            for _ in range(args.rounds):
                local = interleaved({"bare": bare, "peer": peer}, args.seconds)
                rates["bare"].append(local["bare"])
                rates["peer"].append(local["peer"])
                if not verifier.feed.fresh():
                    raise SystemExit(
                        "the feed went stale during the run: the figures would not be 'with the feed'"
                    )
                done, _ok, elapsed = common.h2load(
                    binary, f"http://{address}{METHOD}", body, headers,
                    seconds=args.seconds, clients=args.clients, streams=args.streams,
                )  # fmt: skip
                rates["validate"].append(done / elapsed)
            for _ in range(10):
                if not stub.ValidateToken(
                    auth_pb2.ValidateTokenRequest(access_token=token), timeout=10
                ).valid:
                    print("ValidateToken answered invalid for a live token", file=sys.stderr)
                    return 1
        finally:
            if verifier is not None:
                verifier.close()
            channel.close()
            for process in side.processes:
                process.stop()
        failed = [
            e
            for p in side.processes
            for e in p.events()
            if e.get("event") == "rpc_done" and e.get("outcome") != "OK"
        ]
        if failed:
            print(f"{len(failed)} calls failed on the server side (logs in {workdir})", file=sys.stderr)
            return 1

    median = {name: statistics.median(values) for name, values in rates.items()}
    peer_ratio = median["peer"] / median["bare"]
    validate_ratio = median["validate"] / median["bare"]
    print()
    print("| | calls/s (median) | rounds | ratio to bare PyJWT |")
    print("|---|---|---|---|")
    rows = (
        ("bare PyJWT RS256 verify (1 core)", "bare", 1.0),
        ("TokenVerifier.verify with the feed (1 core)", "peer", peer_ratio),
        (f"ValidateToken, {args.processes} server processes", "validate", validate_ratio),
    )
    for label, name, ratio in rows:
        runs = ", ".join(f"{r:.0f}" for r in rates[name])
        print(f"| {label} | {median[name]:.0f} | {runs} | {ratio:.2f} |")
    print()
    missed = []
    if peer_ratio < PEER_TARGET:
        missed.append(f"identity.peer {peer_ratio:.2f} < {PEER_TARGET}")
    if validate_ratio < VALIDATE_TARGET:
        missed.append(f"ValidateToken {validate_ratio:.2f} < {VALIDATE_TARGET}")
    print("targets met" if not missed else "targets missed: " + "; ".join(missed))
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 2 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
