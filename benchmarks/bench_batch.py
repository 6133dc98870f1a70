"""The batch path at the size of one run of the protocol (issue 29): 100 personas x 30 items x
10 repetitions = 30,000 requests written as a batch file, answered (here by a local script: one
valid digit per request, as a provider's output file holds them), and collected into the store.

    python benchmarks/bench_batch.py [--personas 100] [--repetitions 10]

Prints the recorder's time for writing the batch file and for collecting the results, and the
process's peak memory (ru_maxrss).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def toolkit(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "cli.py"), *args], check=True,
                   capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--personas", type=int, default=100)
    ap.add_argument("--repetitions", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        people = root / "personas.json"  # written here: a persona set of the size asked
        people.write_text(json.dumps({"name": "bench", "description": "benchmark personas",
                                      "personas": [f"Persona number {i}, a benchmark stand-in" for i in
                                                   range(args.personas)]}))
        common = ["record", "--personas", str(people), "--backend", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1",
                  "--store", str(root / "store"), "--limit-personas", str(args.personas), "--repetitions",
                  str(args.repetitions), "--temperature", "0.7", "--quiet"]
        t_write = toolkit(*common, "--batch-file", str(root / "b0.jsonl"))
        lines = (root / "b0.jsonl").read_text().splitlines()
        out = []
        for i, line in enumerate(lines):
            req = json.loads(line)
            digit = int(hashlib.sha256(req["custom_id"].encode()).hexdigest()[:2], 16) % 6
            body = {"id": f"c{i}", "object": "chat.completion", "model": "m",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": str(digit)},
                                 "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 180, "completion_tokens": 1, "total_tokens": 181}}
            out.append(json.dumps({"id": f"r{i}", "custom_id": req["custom_id"],
                                   "response": {"status_code": 200, "request_id": f"q{i}", "body": body},
                                   "error": None}))
        (root / "r0.jsonl").write_text("\n".join(out) + "\n")
        t_collect = toolkit(*common, "--batch-results", str(root / "r0.jsonl"), "--batch-file", str(root / "b1.jsonl"))
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        left = (root / "b1.jsonl").read_text().count("\n")
    print(f"{len(lines)} requests: batch file written in {t_write:.1f} s, results collected and stored in "
          f"{t_collect:.1f} s ({t_write + t_collect:.1f} s in all, whole CLI processes); {left} left to send; "
          f"peak memory {peak:.0f} MB")


if __name__ == "__main__":
    main()
