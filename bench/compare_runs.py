"""Are two runs the same? metrics.json values, sample files and saved weights of two run folders, compared.

Used to show that a refactor left behaviour unchanged: run the same profile and seed with the code before and
after (e.g. a `git worktree` of the old commit), then

    python bench/compare_runs.py RUN_BEFORE RUN_AFTER [--name NAME]

prints every differing metric (fields that are timings, dates or paths are listed apart), the sample files and
weight files whose bytes differ, and writes bench/results/compare_NAME.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
# differ by design between two runs of the same job
VOLATILE = {"seconds", "seconds_by_part", "created", "run", "date", "wall_s", "time"}


def flat(x: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists as {'a/b[0]': leaf}."""
    if isinstance(x, dict):
        return {k: v for key, val in x.items() for k, v in flat(val, f"{prefix}/{key}").items()}
    if isinstance(x, list):
        return {k: v for i, val in enumerate(x) for k, v in flat(val, f"{prefix}[{i}]").items()}
    return {prefix: x}


def metric_diffs(a: Path, b: Path) -> dict[str, Any]:
    fa = flat(json.loads((a / "eval" / "metrics.json").read_text()))
    fb = flat(json.loads((b / "eval" / "metrics.json").read_text()))
    diff = {k: [fa.get(k), fb.get(k)] for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}
    volatile = {k: v for k, v in diff.items() if VOLATILE & {p.split("[")[0] for p in k.split("/")}}
    return {"compared": len(set(fa) & set(fb)), "only_before": sorted(set(fa) - set(fb)),
            "only_after": sorted(set(fb) - set(fa)),
            "differ": {k: v for k, v in diff.items() if k not in volatile and k in fa and k in fb},
            "volatile": volatile}


def digests(root: Path, pattern: str) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob(pattern)) if p.is_file()}


def file_diffs(a: Path, b: Path, pattern: str) -> dict[str, Any]:
    da, db = digests(a, pattern), digests(b, pattern)
    both = set(da) & set(db)
    return {"compared": len(both), "differ": sorted(k for k in both if da[k] != db[k]),
            "only_before": sorted(set(da) - set(db)), "only_after": sorted(set(db) - set(da))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--name", default=None)
    a = ap.parse_args()
    for run in (a.before, a.after):
        if not (run / "eval" / "metrics.json").is_file():
            sys.exit(f"error: '{run}' has no eval/metrics.json (run the whole job first)")
    out = {"before": str(a.before), "after": str(a.after), "metrics": metric_diffs(a.before, a.after),
           "samples": file_diffs(a.before / "samples", a.after / "samples", "*.png"),
           "weights": file_diffs(a.before, a.after, "*.safetensors")}
    m = out["metrics"]
    print(f"metrics: {m['compared']} compared, {len(m['differ'])} differ, {len(m['volatile'])} volatile "
          f"(timings, dates, paths), {len(m['only_before'])} only before, {len(m['only_after'])} only after")
    for k, (x, y) in m["differ"].items():
        print(f"  {k}: {x} -> {y}")
    for part in ("samples", "weights"):
        d = out[part]
        print(f"{part}: {d['compared']} files compared, {len(d['differ'])} differ"
              + "".join(f"\n  {f}" for f in d["differ"]))
    if a.name:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"compare_{a.name}.json"
        path.write_text(json.dumps(out, indent=2) + "\n")
        print(path)


if __name__ == "__main__":
    main()
