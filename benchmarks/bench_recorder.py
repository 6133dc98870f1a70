"""Benchmark: recorder overhead with the instant in-process backend.

Records a full persona run (100 personas x 30 items x 10 repetitions = 30,000 requests),
then plans the no-op re-run (everything cached).

    python benchmarks/bench_recorder.py [--concurrency 4]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from toolkit.protocol.instrument import load_instrument
from toolkit.protocol.personas import PersonaSet
from toolkit.protocol.requests import Protocol
from toolkit.recorder.backends.instant import InstantBackend
from toolkit.recorder.plan import build_plan
from toolkit.recorder.record import prepare, record
from toolkit.store import Store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    inst = load_instrument()
    texts = tuple(f"Benchmark persona number {i}, a person of type {i % 7}" for i in range(100))
    personas = PersonaSet("bench100", texts)
    proto = Protocol(mode="persona", temperature=0.1, repetitions=10)
    tmp = Path(tempfile.mkdtemp())
    try:
        store = Store(tmp / "store")
        backend = InstantBackend("instant")
        t0 = time.perf_counter()
        plan = build_plan(inst, endpoint=backend.endpoint, model="instant", protocol=proto, personas=personas)
        summary = record(store, plan, inst, backend, variant="base", concurrency=args.concurrency, flush_rows=5000,
                         progress=False)
        t1 = time.perf_counter()
        print(f"record 30,000 requests (instant backend, concurrency {args.concurrency}): {t1 - t0:.2f} s "
              f"({summary.sent} sent)")
        t0 = time.perf_counter()
        plan = build_plan(inst, endpoint=backend.endpoint, model="instant", protocol=proto, personas=personas)
        prepare(store, plan, inst, backend, "base")
        t1 = time.perf_counter()
        print(f"plan the no-op re-run: {t1 - t0:.2f} s (cached {plan.cached}, to send {len(plan.to_send)})")
        t0 = time.perf_counter()
        problems = store.verify()
        print(f"verify: {time.perf_counter() - t0:.2f} s, {len(problems)} problems")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
