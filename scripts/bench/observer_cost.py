#!/usr/bin/env python3
"""CPU cost of the metrics a cached CheckPermission moves (the call's counter and
histogram, its decision, its cache hit), per call, in a loop: the instrumentation
alone, without the noise of a loaded machine's network benchmark. The tallies are
flushed to the Prometheus values every 5000 calls (the server flushes once a second,
about that many calls at full speed).

    .venv/bin/python scripts/bench/observer_cost.py             # one process
    .venv/bin/python scripts/bench/observer_cost.py --multiprocess  # as workers run"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--multiprocess", action="store_true", help="PROMETHEUS_MULTIPROC_DIR mode")
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    if args.multiprocess:
        # Before prometheus_client is imported: it picks its value class then.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="identity-metrics-")
    from prometheus_client import CollectorRegistry

    from identity.domain.observer import CacheEvent
    from identity.domain.permissions import DecisionReason
    from identity.observability.metrics import Metrics, MetricsObserver

    observer = MetricsObserver(Metrics(None if args.multiprocess else CollectorRegistry()))
    started = time.process_time()
    for call in range(args.calls):
        if call % 5000 == 0:
            observer.flush()
        observer.rpc_done("identity.v1.RbacService", "CheckPermission", "OK", 0.0002)
        observer.decision(DecisionReason.GRANTED)
        observer.permission_cache(CacheEvent.HIT)
    per_call = (time.process_time() - started) / args.calls * 1e6
    mode = "multiprocess" if args.multiprocess else "one process"
    print(f"{per_call:.2f} us of CPU per cached CheckPermission for its metrics ({mode})")


if __name__ == "__main__":
    main()
