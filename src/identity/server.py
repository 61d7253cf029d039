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
from identity.api.drain import Drain
from identity.api.interceptor import RPC_OUTCOMES, ErrorMappingInterceptor
from identity.api.peer import PeerCertificates
from identity.api.peer_servicer import PeerServicer
from identity.api.rbac_servicer import RbacServicer
from identity.api.reflection import enable_reflection
from identity.api.registration import HandlerRegistry
from identity.config import Settings
from identity.container import Services, build_services
from identity.domain.clock import Clock
from identity.domain.errors import DomainError
from identity.observability import Telemetry
from identity.services.partitions import run_periodic_ensure
from identity.tls import add_port
from identity.v1 import auth_pb2, auth_pb2_grpc, peer_pb2, peer_pb2_grpc, rbac_pb2, rbac_pb2_grpc

log = structlog.get_logger("identity.server")

SERVICE_NAMES = (
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
    rbac_pb2.DESCRIPTOR.services_by_name["RbacService"].full_name,
    peer_pb2.DESCRIPTOR.services_by_name["PeerService"].full_name,
)
HEALTH_INTERVAL_SECONDS = 2.0


# Request metadata (all headers together) is refused by the transport beyond this, always:
# grpc's default refuses between a soft and a hard limit only at random.
MAX_METADATA_BYTES = 16 * 1024


def transport_limits(max_message_bytes: int) -> list[tuple[str, int]]:
    """What the transport itself refuses. Messages up to 4x the configured limit reach the
    error mapping (api/interceptor.py), which answers REQUEST_TOO_LARGE with ErrorInfo; beyond
    that the transport answers the same status (RESOURCE_EXHAUSTED) without details and
    without buffering them."""
    return [
        ("grpc.max_receive_message_length", 4 * max_message_bytes),
        ("grpc.max_metadata_size", MAX_METADATA_BYTES),
        ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
    ]


class RunningServer:
    def __init__(
        self,
        server: grpc.aio.Server,
        services: Services,
        health_servicer: health.aio.HealthServicer,
        port: int,
        drain: Drain,
        admitted: bool = True,
    ):
        self.drain = drain
        self.server = server
        self.services = services
        self.health = health_servicer
        self.port = port
        self._health_task: asyncio.Task[None] | None = None
        self._partition_task: asyncio.Task[None] | None = None
        self.telemetry: Telemetry | None = None
        # A worker under `serve --workers N` answers SERVING only once its supervisor has
        # admitted it (identity.supervisor), so the group's health is one answer.
        self.admitted = admitted

    async def _set_health(self, status: int) -> None:
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def check_health(self) -> None:
        db_ok, redis_ok = await asyncio.gather(self.services.db.ping(), self.services.redis.ping())
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        await self._set_health(serving if db_ok and redis_ok and self.admitted else not_serving)

    async def watch_health(self) -> None:
        while True:
            await self.check_health()
            await asyncio.sleep(HEALTH_INTERVAL_SECONDS)

    def start_health(self) -> None:
        self._health_task = asyncio.create_task(self.watch_health())

    def start_partition_maintenance(self) -> None:
        interval = self.services.settings.partition_maintenance_interval
        self._partition_task = asyncio.create_task(run_periodic_ensure(self.services.partitions, interval))

    async def stop(self, grace: float) -> None:
        """Health NOT_SERVING at once; calls already taken finish (up to `grace`), new ones
        are refused UNAVAILABLE (api/drain.py); then the transport and the pools close."""
        await self.health.enter_graceful_shutdown()
        for task in (self._health_task, self._partition_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # Still answering while the balancer sees NOT_SERVING (IDENTITY_SHUTDOWN_DELAY_SECONDS).
        await asyncio.sleep(self.services.settings.shutdown_delay.total_seconds())
        # Feed streams never finish on their own: end them so draining does not wait on them.
        self.services.ended_sessions.close_feeds()
        left = await self.drain.drain(grace)
        await self.server.stop(left)
        if self.telemetry is not None:
            await self.telemetry.stop()
        authz = self.services.authz
        log.info("authz_totals", checks=authz.checks, allowed=authz.allowed)
        log.info("rpc_totals", outcomes=dict(RPC_OUTCOMES))
        await self.services.close()


async def ensure_partitions(services: Services) -> None:
    """Start-up partition maintenance. A failure is logged, not fatal: logins for a
    month without a partition land in DEFAULT and are moved by a later run."""
    try:
        await services.partitions.ensure()
    except Exception as exc:
        log.warning("partition_ensure_failed", error_type=type(exc).__name__)


def add_servicers(registrar: HandlerRegistry, services: Services) -> None:
    """Each servicer gets the services it calls, and nothing else."""
    server = registrar.as_server()
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
            trusted_proxies=services.settings.trusted_proxies,
        ),
        server,
    )
    rbac_pb2_grpc.add_RbacServiceServicer_to_server(
        RbacServicer(
            roles=services.roles, authz=services.authz, peers=PeerCertificates(services.service_keys)
        ),
        server,
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
    settings: Settings,
    services: Services | None = None,
    *,
    clock: Clock | None = None,
    admitted: bool = True,
) -> RunningServer:
    # Before the services: tracing wraps the PostgreSQL driver before the pool connects.
    telemetry = Telemetry(settings)
    built = services is None
    services = services or await build_services(settings, clock, telemetry.observer)
    try:
        return await _start(settings, services, telemetry, admitted)
    except BaseException:
        # Start-up failed (a wrong secret, a taken port): nothing of it may outlive the
        # failure, or an open pool's workers would keep the process from exiting.
        await telemetry.stop()
        await services.rbac_sync.stop()
        if built:
            await services.close()
        raise


async def _start(
    settings: Settings, services: Services, telemetry: Telemetry, admitted: bool
) -> RunningServer:
    await services.keys.ensure_ring()
    await services.keys.reload()
    await ensure_partitions(services)
    # The permission cache's lease: checks are answered from memory only while it holds.
    await services.rbac_sync.start()
    # The same for ended sessions: token checks are answered from memory while it holds.
    await services.ended_sessions.start()
    errors = ErrorMappingInterceptor(services.observer, max_message_bytes=settings.max_message_bytes)
    server = grpc.aio.server(
        # Tracing's, when on; the error mapping wraps each method at registration instead.
        interceptors=telemetry.interceptors(),
        options=[
            # Off unless asked for: without this, two servers can silently share one port.
            ("grpc.so_reuseport", 1 if settings.grpc_reuseport else 0),
            *transport_limits(settings.max_message_bytes),
        ],
    )
    registrar = HandlerRegistry(server, errors.wrap)
    add_servicers(registrar, services)
    health_servicer = health.aio.HealthServicer()
    # NOT_SERVING until the first check has seen both backends answer (the servicer's own
    # default for "" is SERVING).
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registrar.as_server())
    enable_reflection(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        registrar,
    )
    port, tls = add_port(server, settings)
    if port == 0:
        raise RuntimeError(f"cannot listen on {settings.grpc_listen}")
    await telemetry.start(services)  # before serving: a metrics port that is taken fails the start
    await server.start()
    running = RunningServer(server, services, health_servicer, port, errors.drain, admitted)
    running.telemetry = telemetry
    running.start_health()
    running.start_partition_maintenance()
    # Everything loaded so far lives as long as the process: keep it out of the cyclic
    # collector, whose full passes over it would otherwise pause calls for ~50 ms.
    gc.collect()
    gc.freeze()
    log.info("serving", listen=settings.grpc_listen, port=port, tls=tls is not None)
    return running


async def serve(settings: Settings) -> None:
    try:
        running = await start_server(settings)
    except DomainError as error:
        # A database or Redis that does not answer at start-up: one JSON line, no traceback.
        log.error("startup_failed", reason=error.reason.value, cause=type(error.__cause__).__name__)
        raise SystemExit(1) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping", grace_seconds=settings.shutdown_grace.total_seconds())
    await running.stop(settings.shutdown_grace.total_seconds())
    log.info("stopped")
