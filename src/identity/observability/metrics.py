"""The Prometheus series of the service, and the Observer that moves them.

Names follow Prometheus conventions: base units (seconds), `_total` on counters, and
only bounded label values (gRPC service/method/code names, enum members). The per-RPC
series use the names of go-grpc-prometheus, so existing gRPC dashboards read them.

In multiprocess mode (PROMETHEUS_MULTIPROC_DIR set: several workers on one host)
every process writes its values to files in that directory and a scrape of any
process sums them; each gauge says how (`multiprocess_mode`)."""

from __future__ import annotations

import bisect
import math
import platform
import threading
from importlib import metadata

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from identity.domain.models import LoginOutcome
from identity.domain.observer import CacheEvent, NoopObserver, RefreshOutcome, ThrottleScope
from identity.domain.permissions import DecisionReason

# From a cached CheckPermission (~0.2 ms) to a bcrypt login under load (seconds).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


# What a password check can end with (the MFA and refresh outcomes have series of their own).
_PASSWORD_OUTCOMES = (
    LoginOutcome.SUCCESS,
    LoginOutcome.BAD_CREDENTIALS,
    LoginOutcome.THROTTLED,
    LoginOutcome.LOCKED_OUT,
    LoginOutcome.ACCOUNT_DISABLED,
    LoginOutcome.MFA_REQUIRED,
)


def _version() -> str:
    try:
        return metadata.version("identity")
    except metadata.PackageNotFoundError:  # pragma: no cover - always installed here
        return "unknown"


class Metrics:
    """Every series, registered in `registry` (None in multiprocess mode: there the
    values live in files and the scrape reads them through its own collector)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry
        self.rpc_handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, by method and status code.",
            ["grpc_service", "grpc_method", "grpc_code"],
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from receiving an RPC to its answer, by method.",
            ["grpc_service", "grpc_method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.logins = Counter(
            "identity_logins",
            "Password checks by outcome: Login calls (kind=login) and the re-authentications "
            "of signed-in callers (kind=reauthentication).",
            ["kind", "outcome"],
            registry=r,
        )
        self.mfa = Counter("identity_mfa_checks", "Second-factor checks by outcome.", ["outcome"], registry=r)
        self.refreshes = Counter(
            "identity_refreshes",
            "Refresh calls that rotated a token (rotated) or caught a rotated token presented "
            "again (reuse_detected: the session was ended).",
            ["outcome"],
            registry=r,
        )
        self.throttled = Counter(
            "identity_login_throttled",
            "Login attempts refused by the per-account or per-address window.",
            ["scope"],
            registry=r,
        )
        self.lockouts = Counter(
            "identity_account_lockouts",
            "Accounts that reached IDENTITY_MAX_FAILED_LOGINS consecutive failures.",
            registry=r,
        )
        self.decisions = Counter(
            "identity_permission_decisions",
            "Permission check answers by reason (GRANTED is the only allowing one).",
            ["reason"],
            registry=r,
        )
        self.cache_hits = Counter(
            "identity_permission_cache_hits", "Permission lookups answered from memory.", registry=r
        )
        self.cache_misses = Counter(
            "identity_permission_cache_misses", "Permission lookups that read PostgreSQL.", registry=r
        )
        self.cache_invalidations = Counter(
            "identity_permission_cache_invalidations",
            "RBAC changes applied to the permission cache (what they touched dropped, or all).",
            registry=r,
        )
        self.lease_held = Gauge(
            "identity_rbac_lease_held",
            "1 while this process (every process, in multiprocess mode) holds its RBAC cache lease.",
            multiprocess_mode="livemin",
            registry=r,
        )
        self.lease_losses = Counter(
            "identity_rbac_lease_losses",
            "Times the RBAC listening connection died and the lease was dropped.",
            registry=r,
        )
        self.key_created = Gauge(
            "identity_signing_key_active_created_timestamp_seconds",
            "Creation time of the active signing key (its age is time() minus this).",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.keys_published = Gauge(
            "identity_signing_keys_published",
            "Keys in the JWKS (next, active and retired ones still published).",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.pool_in_use = Gauge(
            "identity_db_pool_connections_in_use",
            "PostgreSQL connections lent out.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.pool_max = Gauge(
            "identity_db_pool_connections_max",
            "PostgreSQL pool ceiling (IDENTITY_DB_POOL_MAX).",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.pool_waiting = Gauge(
            "identity_db_pool_requests_waiting",
            "Calls waiting for a pooled PostgreSQL connection.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.pool_timeouts = Counter(
            "identity_db_pool_timeouts",
            "Calls that waited IDENTITY_DB_TIMEOUT_SECONDS for a connection and got none.",
            registry=r,
        )
        self.redis_errors = Counter(
            "identity_redis_errors", "Redis commands that failed (connection or server error).", registry=r
        )
        self.partition_months = Gauge(
            "identity_login_history_partition_months_ahead",
            "Months after the current one whose login_history partition exists (-1: not even this one).",
            multiprocess_mode="livemin",
            registry=r,
        )
        self.build_info = Gauge(
            "identity_build_info",
            "Always 1; the labels say what runs.",
            ["version", "python_version"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.build_info.labels(_version(), platform.python_version()).set(1)
        self._zero_known_labels()

    def _zero_known_labels(self) -> None:
        # Every series of a fixed label set exists from the start (at 0), so a rate()
        # over it is defined and an alert can tell "none" from "no data".
        for outcome in _PASSWORD_OUTCOMES:
            for kind in ("login", "reauthentication"):
                self.logins.labels(kind, outcome.value.lower())
        for mfa in (LoginOutcome.MFA_SUCCESS, LoginOutcome.MFA_FAILED):
            self.mfa.labels(mfa.value.lower())
        for refresh in RefreshOutcome:
            self.refreshes.labels(refresh.value)
        for scope in ThrottleScope:
            self.throttled.labels(scope.value)
        for reason in DecisionReason:
            self.decisions.labels(reason.value)


class _Tally:
    """A counter child counted in memory and added to its Prometheus value by `flush`:
    an integer addition per call instead of a locked write (to an mmap'd file in
    multiprocess mode). Only the event loop writes `count`; only `flush` (under the
    observer's lock, from the sampler or the scrape thread) writes `_flushed`."""

    __slots__ = ("_child", "_flushed", "count")

    def __init__(self, child: Counter) -> None:
        self._child = child
        self.count = 0
        self._flushed = 0

    def flush(self) -> None:
        count = self.count
        if count != self._flushed:
            self._child.inc(count - self._flushed)
            self._flushed = count


class _LatencyTally:
    """The same for one method's latency histogram: per-bucket counts and the sum in
    memory, added to the histogram child's bucket and sum values by `flush`."""

    __slots__ = ("_child", "_flushed_counts", "_flushed_total", "counts", "total")

    _BOUNDS = (*LATENCY_BUCKETS, math.inf)

    def __init__(self, child: Histogram) -> None:
        self._child = child
        self.counts = [0] * len(self._BOUNDS)
        self._flushed_counts = [0] * len(self._BOUNDS)
        self.total = 0.0
        self._flushed_total = 0.0

    def observe(self, seconds: float) -> None:
        # The first bucket whose bound is >= seconds, as Histogram.observe picks it.
        self.counts[bisect.bisect_left(self._BOUNDS, seconds)] += 1
        self.total += seconds

    def flush(self) -> None:
        counts, total = list(self.counts), self.total
        # Histogram's own values: prometheus_client has no public "add n observations".
        buckets = self._child._buckets
        for i, count in enumerate(counts):
            if count != self._flushed_counts[i]:
                buckets[i].inc(count - self._flushed_counts[i])
        if total != self._flushed_total:
            self._child._sum.inc(total - self._flushed_total)
        self._flushed_counts, self._flushed_total = counts, total


class MetricsObserver(NoopObserver):
    """Moves the series above. What every call moves (its counter and latency, a
    permission decision, a cache hit) is tallied in memory and flushed to Prometheus
    values once a second and before each scrape (`flush`), so the hot path costs a
    few dictionary lookups and integer additions; rarer events are written at once."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        m = metrics
        self._lock = threading.Lock()
        self._rpc: dict[tuple[str, str, str], _Tally] = {}
        self._latency: dict[tuple[str, str], _LatencyTally] = {}
        self._decisions = {reason: _Tally(m.decisions.labels(reason.value)) for reason in DecisionReason}
        self._cache = {
            CacheEvent.HIT: _Tally(m.cache_hits),
            CacheEvent.MISS: _Tally(m.cache_misses),
            CacheEvent.INVALIDATION: _Tally(m.cache_invalidations),
        }

    def flush(self) -> None:
        """Adds what was tallied since the last flush (from any thread)."""
        with self._lock:
            # list(): the event loop may add a method's tally meanwhile.
            for tally in [*list(self._rpc.values()), *self._decisions.values(), *self._cache.values()]:
                tally.flush()
            for latency in list(self._latency.values()):
                latency.flush()

    def rpc_done(self, service: str, method: str, code: str, seconds: float) -> None:
        key = (service, method, code)
        tally = self._rpc.get(key)
        if tally is None:
            tally = self._rpc[key] = _Tally(self.metrics.rpc_handled.labels(service, method, code))
        tally.count += 1
        latency = self._latency.get((service, method))
        if latency is None:
            child = self.metrics.rpc_seconds.labels(service, method)
            latency = self._latency[(service, method)] = _LatencyTally(child)
        latency.observe(seconds)

    def password_check(self, outcome: LoginOutcome, *, reauthentication: bool) -> None:
        kind = "reauthentication" if reauthentication else "login"
        self.metrics.logins.labels(kind, outcome.value.lower()).inc()

    def mfa(self, outcome: LoginOutcome) -> None:
        self.metrics.mfa.labels(outcome.value.lower()).inc()

    def refresh(self, outcome: RefreshOutcome) -> None:
        self.metrics.refreshes.labels(outcome.value).inc()

    def throttled(self, scope: ThrottleScope) -> None:
        self.metrics.throttled.labels(scope.value).inc()

    def account_locked(self) -> None:
        self.metrics.lockouts.inc()

    def decision(self, reason: DecisionReason) -> None:
        self._decisions[reason].count += 1

    def permission_cache(self, event: CacheEvent) -> None:
        self._cache[event].count += 1

    def rbac_lease_lost(self) -> None:
        self.metrics.lease_losses.inc()

    def redis_error(self) -> None:
        self.metrics.redis_errors.inc()

    def db_pool_timeout(self) -> None:
        self.metrics.pool_timeouts.inc()
