"""`identity serve --workers N`: N server processes sharing one port, one supervisor.

One Python process uses one core, so a host runs several workers on one port
(SO_REUSEPORT: the kernel spreads connections, not calls, across them). The
supervisor
- makes sure nothing else holds the port before it starts a worker, and keeps it
  reserved for the group (a socket bound with SO_REUSEPORT that never listens);
- starts the workers, each linked to it by a socketpair: a worker says `ready` once it
  listens, and answers SERVING to health checks only after the supervisor says `admit`,
  which it does once every worker of the first start is ready (a balancer that connected
  while only one worker listened would pin all its connections to it);
- restarts a worker that dies, with a back-off, and gives up when a worker cannot
  start at all (the whole group then exits non-zero);
- on SIGTERM or SIGINT forwards SIGTERM to every worker, each of which turns NOT_SERVING
  and drains its calls (IDENTITY_SHUTDOWN_GRACE_SECONDS), and exits once all have ended.
A worker whose supervisor vanishes (EOF on its link) shuts down too: no orphans."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field

import structlog

from identity.config import Settings

log = structlog.get_logger("identity.supervisor")

WORKER_FD_ENV = "IDENTITY_WORKER_FD"
WORKER_INDEX_ENV = "IDENTITY_WORKER_INDEX"
# A worker that has not said `ready` by then is treated as failed to start.
START_TIMEOUT_SECONDS = 60.0
# A worker that dies sooner than this after its start counts towards giving up.
STABLE_AFTER_SECONDS = 10.0
MAX_FAILED_STARTS = 5


class SupervisorError(RuntimeError):
    """The group cannot run: the port is taken, or workers cannot start."""


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise SupervisorError(f"IDENTITY_GRPC_LISTEN must be HOST:PORT, not {listen!r}")
    return host.strip("[]"), int(port)


def reserve_port(listen: str) -> tuple[str, list[socket.socket]]:
    """Fails when anything listens on the address (a socket without SO_REUSEPORT cannot
    bind next to any listener, even a reuseport group), then holds it for the workers.
    Returns the address with a concrete port (port 0 picks one) and the held sockets."""
    host, port = split_listen(listen)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise SupervisorError(f"cannot resolve {listen}: {exc.strerror}") from None
    held: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in infos:
            if port == 0 and held:
                address = (address[0], held[0].getsockname()[1], *address[2:])
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
                address = probe.getsockname()
            holder = socket.socket(family, kind, proto)
            held.append(holder)
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                holder.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            holder.bind(address)
    except OSError as exc:
        for sock in held:
            sock.close()
        raise SupervisorError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    bound_port = held[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{bound_port}", held


@dataclass
class Worker:
    index: int
    process: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    started_at: float = field(default_factory=time.monotonic)
    ready: bool = False
    admitted: bool = False


class Supervisor:
    def __init__(self, settings: Settings, workers: int) -> None:
        if workers < 1:
            raise SupervisorError("--workers must be at least 1")
        self._settings = settings
        self._count = workers
        self._listen = settings.grpc_listen
        self._workers: dict[int, Worker] = {}
        self._draining = False
        self._group_admitted = False
        self._failed_starts = 0
        self._fatal: str | None = None
        self._changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # With metrics on, the workers share one prometheus-client multiprocess directory,
        # so one scrape of the host sees all of them (identity.observability.listener).
        self._metrics_dir: str | None = None
        self._own_metrics_dir = False

    def _share_metrics(self) -> None:
        if not self._settings.metrics_listen:
            return
        from identity.observability.listener import MULTIPROC_ENV

        self._metrics_dir = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="identity-metrics-")
        self._own_metrics_dir = MULTIPROC_ENV not in os.environ

    def _forget_metrics_of(self, pid: int) -> None:
        if self._metrics_dir is not None:
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(pid, self._metrics_dir)  # type: ignore[no-untyped-call]

    async def run(self) -> int:
        self._listen, held = reserve_port(self._settings.grpc_listen)
        self._share_metrics()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        log.info("supervisor_starting", listen=self._listen, workers=self._count, pid=os.getpid())
        try:
            for index in range(self._count):
                await self._spawn(index)
            stopper = asyncio.create_task(self._stop.wait())
            while not self._stop.is_set() and self._fatal is None:
                self._changed.clear()
                self._admit_when_all_ready()
                changed = asyncio.create_task(self._changed.wait())
                await asyncio.wait({stopper, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
            stopper.cancel()
            return await self._drain()
        finally:
            for sock in held:
                sock.close()
            if self._metrics_dir is not None and self._own_metrics_dir:
                shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def _admit_when_all_ready(self) -> None:
        workers = list(self._workers.values())
        if not self._group_admitted and len(workers) == self._count and all(w.ready for w in workers):
            self._group_admitted = True
            log.info("workers_ready", pids=[w.process.pid for w in workers])
        if self._group_admitted:
            for worker in workers:
                if worker.ready and not worker.admitted:
                    worker.admitted = True
                    worker.writer.write(b"admit\n")

    async def _spawn(self, index: int) -> None:
        parent, child = socket.socketpair()
        env = dict(os.environ)
        env.update(
            {
                "IDENTITY_GRPC_LISTEN": self._listen,
                "IDENTITY_GRPC_REUSEPORT": "true",
                "IDENTITY_WORKERS": "1",
                WORKER_FD_ENV: str(child.fileno()),
                WORKER_INDEX_ENV: str(index),
            }
        )
        if self._metrics_dir is not None:
            env["PROMETHEUS_MULTIPROC_DIR"] = self._metrics_dir
        if "IDENTITY_HASH_CONCURRENCY" not in os.environ:
            # The default (the number of cores) is per process: N workers would run N times
            # as many bcrypt threads as there are cores, crowding out their event loops.
            env["IDENTITY_HASH_CONCURRENCY"] = str(max(1, (os.cpu_count() or 1) // self._count))
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "identity.supervisor", env=env, pass_fds=(child.fileno(),)
            )
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        worker = Worker(index, process, reader, writer)
        self._workers[index] = worker
        log.info("worker_started", worker=index, worker_pid=process.pid)
        task = asyncio.create_task(self._follow(worker))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow(self, worker: Worker) -> None:
        """Reads the worker's link until it closes, then waits for its exit."""
        deadline = worker.started_at + START_TIMEOUT_SECONDS
        while line := await self._readline(worker, deadline):
            if line == b"ready\n" and not worker.ready:
                worker.ready = True
                self._changed.set()
        if not worker.ready and worker.process.returncode is None:
            log.error("worker_start_timeout", worker=worker.index, worker_pid=worker.process.pid)
            worker.process.kill()
        code = await worker.process.wait()
        worker.writer.close()
        self._forget_metrics_of(worker.process.pid)
        if self._draining or self._stop.is_set():
            return
        await self._restart(worker, code)

    @staticmethod
    async def _readline(worker: Worker, deadline: float) -> bytes:
        timeout = None if worker.ready else max(0.0, deadline - time.monotonic())
        try:
            return await asyncio.wait_for(worker.reader.readline(), timeout)
        except (TimeoutError, ConnectionError):
            return b""

    async def _restart(self, worker: Worker, code: int) -> None:
        uptime = time.monotonic() - worker.started_at
        failed_start = not worker.ready or uptime < STABLE_AFTER_SECONDS
        self._failed_starts = self._failed_starts + 1 if failed_start else 0
        log.warning(
            "worker_exited", worker=worker.index, worker_pid=worker.process.pid, code=code, ready=worker.ready
        )
        if not self._group_admitted and not worker.ready:
            # The first start failed (port taken, bad settings, no database): do not loop.
            self._fatal = f"worker {worker.index} exited with {code} before it was ready"
        elif self._failed_starts > MAX_FAILED_STARTS:
            self._fatal = f"workers keep failing ({self._failed_starts} quick exits in a row)"
        if self._fatal is not None:
            self._changed.set()
            return
        await asyncio.sleep(min(10.0, 0.25 * 2**self._failed_starts))
        if not (self._draining or self._stop.is_set()):
            await self._spawn(worker.index)
            self._changed.set()

    async def _drain(self) -> int:
        self._draining = True
        workers = list(self._workers.values())
        pids = [w.process.pid for w in workers]
        log.info("supervisor_stopping", workers=pids, reason=self._fatal or "signal")
        for worker in workers:
            if worker.process.returncode is None:
                worker.process.send_signal(signal.SIGTERM)
        limit = self._settings.shutdown_grace.total_seconds() + 10
        codes = []
        for worker in workers:
            try:
                codes.append(await asyncio.wait_for(worker.process.wait(), limit))
            except TimeoutError:
                log.error("worker_kill", worker=worker.index, worker_pid=worker.process.pid)
                worker.process.kill()
                codes.append(await worker.process.wait())
        if self._fatal is not None:
            log.error("supervisor_failed", error=self._fatal)
            return 1
        clean = all(code == 0 for code in codes)
        log.info("supervisor_stopped", clean=clean)
        return 0 if clean else 1


async def supervise(settings: Settings, workers: int) -> int:
    return await Supervisor(settings, workers).run()


async def serve_worker(settings: Settings, link_fd: int) -> None:
    """One worker: the server of identity.server, held NOT_SERVING until admitted."""
    from identity.server import start_server

    structlog.contextvars.bind_contextvars(worker=int(os.environ.get(WORKER_INDEX_ENV, "0")))
    link = socket.socket(fileno=link_fd)
    reader, writer = await asyncio.open_unix_connection(sock=link)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = await start_server(settings, admitted=False)
    writer.write(b"ready\n")
    await writer.drain()

    async def follow_supervisor() -> None:
        while line := await reader.readline():
            if line == b"admit\n":
                running.admitted = True
                await running.check_health()
        log.warning("supervisor_gone")
        stop.set()

    follower = asyncio.create_task(follow_supervisor())
    await stop.wait()
    follower.cancel()
    log.info("stopping", grace_seconds=settings.shutdown_grace.total_seconds())
    await running.stop(settings.shutdown_grace.total_seconds())
    writer.close()
    log.info("stopped")


def worker_main() -> None:
    from identity.cli.runtime import run, settings

    run(serve_worker(settings(), int(os.environ[WORKER_FD_ENV])))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        worker_main()
