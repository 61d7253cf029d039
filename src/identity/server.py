"""`identity serve`: grpc.aio with AuthService, RbacService, health and reflection.

Health answers SERVING only while PostgreSQL and Redis both answer. SIGTERM
flips health to NOT_SERVING, stops taking calls, lets in-flight calls finish
(up to the shutdown grace), then closes the pools."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from identity.api.auth_servicer import AuthServicer
from identity.api.interceptor import ErrorMappingInterceptor
from identity.api.peer_servicer import PeerServicer
from identity.api.rbac_servicer import RbacServicer
from identity.config import Settings
from identity.container import Services, build_services
from identity.domain.clock import Clock
from identity.services.partitions import run_periodic_ensure
from identity.v1 import auth_pb2, auth_pb2_grpc, peer_pb2, peer_pb2_grpc, rbac_pb2, rbac_pb2_grpc

log = structlog.get_logger("identity.server")

SERVICE_NAMES = (
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
    rbac_pb2.DESCRIPTOR.services_by_name["RbacService"].full_name,
    peer_pb2.DESCRIPTOR.services_by_name["PeerService"].full_name,
)
HEALTH_INTERVAL_SECONDS = 2.0


class RunningServer:
    def __init__(
        self,
        server: grpc.aio.Server,
        services: Services,
        health_servicer: health.aio.HealthServicer,
        port: int,
    ):
        self.server = server
        self.services = services
        self.health = health_servicer
        self.port = port
        self._health_task: asyncio.Task[None] | None = None
        self._partition_task: asyncio.Task[None] | None = None

    async def _set_health(self, status: int) -> None:
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def watch_health(self) -> None:
        while True:
            db_ok, redis_ok = await asyncio.gather(self.services.db.ping(), self.services.redis.ping())
            serving = health_pb2.HealthCheckResponse.SERVING
            not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
            await self._set_health(serving if db_ok and redis_ok else not_serving)
            await asyncio.sleep(HEALTH_INTERVAL_SECONDS)

    def start_health(self) -> None:
        self._health_task = asyncio.create_task(self.watch_health())

    def start_partition_maintenance(self) -> None:
        interval = self.services.settings.partition_maintenance_interval
        self._partition_task = asyncio.create_task(run_periodic_ensure(self.services.partitions, interval))

    async def stop(self, grace: float) -> None:
        for task in (self._health_task, self._partition_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        # Feed streams never finish on their own: end them so draining does not wait on them.
        self.services.ended_sessions.close_feeds()
        await self.server.stop(grace)
        authz = self.services.authz
        log.info("authz_totals", checks=authz.checks, allowed=authz.allowed)
        await self.services.close()


async def ensure_partitions(services: Services) -> None:
    """Start-up partition maintenance. A failure is logged, not fatal: logins for a
    month without a partition land in DEFAULT and are moved by a later run."""
    try:
        await services.partitions.ensure()
    except Exception as exc:
        log.warning("partition_ensure_failed", error_type=type(exc).__name__)


def add_servicers(server: grpc.aio.Server, services: Services) -> None:
    """Each servicer gets the services it calls, and nothing else."""
    auth_pb2_grpc.add_AuthServiceServicer_to_server(
        AuthServicer(
            auth=services.auth,
            tokens=services.tokens,
            sessions=services.sessions,
            account=services.account,
            history=services.history,
            keys=services.keys,
            mfa=services.mfa,
            mfa_login=services.mfa_login,
            trusted_proxy_hops=services.settings.trusted_proxy_hops,
        ),
        server,
    )
    rbac_pb2_grpc.add_RbacServiceServicer_to_server(
        RbacServicer(roles=services.roles, authz=services.authz), server
    )
    peer_pb2_grpc.add_PeerServiceServicer_to_server(
        PeerServicer(
            ended=services.ended_sessions,
            authz=services.authz,
            heartbeat=services.settings.revocation_feed_heartbeat,
        ),
        server,
    )


async def start_server(
    settings: Settings, services: Services | None = None, *, clock: Clock | None = None
) -> RunningServer:
    services = services or await build_services(settings, clock)
    await services.keys.ensure_ring()
    await services.keys.reload()
    await ensure_partitions(services)
    # The permission cache's lease: checks are answered from memory only while it holds.
    await services.rbac_sync.start()
    # The same for ended sessions: token checks are answered from memory while it holds.
    await services.ended_sessions.start()
    server = grpc.aio.server(
        interceptors=[ErrorMappingInterceptor()],
        options=[
            # Off unless asked for: without this, two servers can silently share one port.
            ("grpc.so_reuseport", 1 if settings.grpc_reuseport else 0),
            ("grpc.max_receive_message_length", settings.max_message_bytes),
        ],
    )
    add_servicers(server, services)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    port = server.add_insecure_port(settings.grpc_listen)
    if port == 0:
        raise RuntimeError(f"cannot listen on {settings.grpc_listen}")
    await server.start()
    running = RunningServer(server, services, health_servicer, port)
    running.start_health()
    running.start_partition_maintenance()
    # Everything loaded so far lives as long as the process: keep it out of the cyclic
    # collector, whose full passes over it would otherwise pause calls for ~50 ms.
    gc.collect()
    gc.freeze()
    log.info("serving", listen=settings.grpc_listen, port=port)
    return running


async def serve(settings: Settings) -> None:
    running = await start_server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping", grace_seconds=settings.shutdown_grace.total_seconds())
    await running.stop(settings.shutdown_grace.total_seconds())
    log.info("stopped")
