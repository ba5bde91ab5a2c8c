"""Simulator throughput: spectrograms per second at 128x128 and 64x64 (end to end, PNG files written).

    python bench/simulate.py [--quick] [--workers N]

For each size: the whole ``simulate_dataset`` call (population, recordings, STFT, windows, PNG writing,
metadata) into a temporary folder, and the compute alone (``simulate_recording``, no files) for one
recording on one process. Prints a table and writes bench/results/simulate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from dopplerdiff.config import SimulateConfig
from dopplerdiff.config.base import to_dict
from dopplerdiff.data.simulate import draw_person, draw_recording, simulate_dataset, simulate_recording
from dopplerdiff.utils.io import versions

RESULTS = Path(__file__).resolve().parent / "results"


def measure(cfg: SimulateConfig) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = simulate_dataset(cfg, Path(tmp) / "sim", progress=False)
        seconds = time.perf_counter() - t0
        workers = json.loads((out / "manifest.json").read_text())["workers"]
    n = cfg.identities * cfg.per_identity
    # Compute only: one recording of the configured length on this process.
    person = draw_person(cfg, 0)
    rec = draw_recording(cfg, person, 0, 0)
    per_rec = cfg.per_identity // cfg.recordings_per_identity
    t1 = time.perf_counter()
    simulate_recording(cfg, person, rec, per_rec)
    one = time.perf_counter() - t1
    return {
        "size": cfg.size, "identities": cfg.identities, "per_identity": cfg.per_identity, "windows": n,
        "workers": workers, "seconds": round(seconds, 2), "spectrograms_per_s": round(n / seconds, 1),
        "compute_only_1proc_per_s": round(per_rec / one, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 identities x 30 windows instead of 31 x 120")
    ap.add_argument("--workers", type=int, default=0, help="processes (0 = automatic)")
    args = ap.parse_args()
    ids, per = (4, 30) if args.quick else (31, 120)
    # The manifest records library versions by importing torch & co.; do that once, outside the timing.
    versions()
    rows = []
    for size in (128, 64):
        cfg = SimulateConfig(identities=ids, per_identity=per, size=size, workers=args.workers)
        rows.append(measure(cfg))
        r = rows[-1]
        print(f"size {size}: {r['windows']} windows in {r['seconds']} s", file=sys.stderr)
    head = (f"{'size':>5} {'windows':>8} {'workers':>8} {'seconds':>8} {'spec/s':>8} "
            f"{'1-proc compute spec/s':>22}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['size']:>5} {r['windows']:>8} {r['workers']:>8} {r['seconds']:>8} "
              f"{r['spectrograms_per_s']:>8} {r['compute_only_1proc_per_s']:>22}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    result = {
        "quick": args.quick,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_at_end": load, "rows": rows,
        "config": {k: v for k, v in to_dict(SimulateConfig()).items() if k != "workers"},
    }
    (RESULTS / "simulate.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'simulate.json'}")


if __name__ == "__main__":
    main()
