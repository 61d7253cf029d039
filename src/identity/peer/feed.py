"""The revocation feed, followed in a background thread: a copy of every ended session
whose tokens could still verify, and how current that copy is.

The thread reconnects on its own (with backoff) and resumes from the last cursor, so a
reconnect misses nothing. The copy counts as current for `staleness` seconds after the
last heartbeat (the server sends one every second while its own record is current); past
that, TokenVerifier does what the peer chose: fail closed or ask ValidateToken."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc

from identity.v1 import peer_pb2, peer_pb2_grpc

log = logging.getLogger("identity.peer.feed")

DEFAULT_STALENESS = 5.0


class RevocationFeed:
    def __init__(
        self,
        channel: grpc.Channel,
        *,
        service_key: str | None = None,
        staleness: float = DEFAULT_STALENESS,
        reconnect_min: float = 0.1,
        reconnect_max: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stub = peer_pb2_grpc.PeerServiceStub(channel)
        self._metadata = (("authorization", f"Bearer {service_key}"),) if service_key else ()
        self.staleness = staleness
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._monotonic = monotonic
        # session id -> until when its tokens could still verify (Unix seconds).
        self._ended: dict[str, float] = {}
        self.cursor = ""
        self._heard_at = float("-inf")
        self._heard = threading.Condition()
        self._stopping = threading.Event()
        self._call: Any = None
        self._thread: threading.Thread | None = None
        self.connects = 0

    # -- read by the verifier, from any thread ------------------------------------------

    def is_ended(self, session_id: str) -> bool:
        return session_id in self._ended

    def fresh(self) -> bool:
        return self._monotonic() - self._heard_at < self.staleness

    def wait_fresh(self, timeout: float) -> bool:
        """Blocks until the copy is current (the first heartbeat), at most `timeout`."""
        deadline = time.monotonic() + timeout
        with self._heard:
            while not self.fresh():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._heard.wait(remaining)
        return True

    @property
    def ended_count(self) -> int:
        return len(self._ended)

    # -- the thread ---------------------------------------------------------------------

    def start(self) -> RevocationFeed:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="identity-revocation-feed", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        call = self._call
        if call is not None:
            call.cancel()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        delay = self._reconnect_min
        while not self._stopping.is_set():
            try:
                self._follow()
                delay = self._reconnect_min
            except grpc.RpcError as error:
                if self._stopping.is_set():
                    return
                code = error.code() if isinstance(error, grpc.Call) else None
                log.warning("revocation feed lost (%s); reconnecting", getattr(code, "name", code))
            self._stopping.wait(delay)
            delay = min(delay * 2, self._reconnect_max)

    def _follow(self) -> None:
        request = peer_pb2.WatchSessionRevocationsRequest(cursor=self.cursor)
        call = self._stub.WatchSessionRevocations(request, metadata=self._metadata)
        self._call = call
        self.connects += 1
        last_prune = time.monotonic()
        for message in call:
            for ended in message.ended_sessions:
                until = ended.tokens_valid_until.seconds
                self._ended[ended.session_id] = float(until)
            if message.cursor:
                self.cursor = message.cursor
            if message.HasField("current_time"):
                with self._heard:
                    self._heard_at = self._monotonic()
                    self._heard.notify_all()
            if time.monotonic() - last_prune > 60:
                self._prune()
                last_prune = time.monotonic()

    def _prune(self, margin: float = 300.0) -> None:
        horizon = datetime.now(UTC).timestamp() - margin
        for session_id in [s for s, until in self._ended.items() if until < horizon]:
            self._ended.pop(session_id, None)
