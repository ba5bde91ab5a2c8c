"""Run every benchmark, print one summary table, keep each script's JSON in bench/results/.

    python bench/all.py [--quick] [--only simulate,diffusion] [--run-profile quick]

``--run-profile P`` also times the whole ``dopplerdiff run --profile P`` on the simulated default and records
its wall time, peak resident memory and minutes per stage (bench/results/run_<P>.json); it is off by default
because the quick profile takes over 20 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
SCRIPTS = ["simulate", "autoencoder", "diffusion", "sampler", "identify", "realism"]


def run_script(name: str, quick: bool) -> dict:
    cmd = [sys.executable, str(HERE / f"{name}.py"), *(["--quick"] if quick else [])]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    row = {"name": name, "ok": proc.returncode == 0, "seconds": time.time() - t0}
    print(proc.stdout, end="")
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    return row


def time_run(profile: str, keep: str = "") -> dict:
    """Wall time and peak RSS of the end-to-end job on the simulated default (run kept in ``keep``)."""
    out = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="dd-bench-")) / "run"
    if keep and out.exists():
        sys.exit(f"error: --keep-run {keep} already exists; give a new folder")
    cli = Path(sys.executable).parent / "dopplerdiff"
    t0 = time.time()
    proc = subprocess.run([str(cli), "run", "--profile", profile, "--out", str(out), "--quiet"])
    wall = time.time() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    def read(rel: str) -> dict:
        return json.loads((out / rel).read_text()) if (out / rel).is_file() else {}

    stages = (read("timings.json").get("invocations") or [{}])[-1].get("stages", [])
    result = {"profile": profile, "ok": proc.returncode == 0, "wall_min": wall / 60, "peak_rss_mb": peak_mb,
              "stage_min": {r["stage"]: round(r["seconds"] / 60, 2) for r in stages},
              "eval": read("eval/metrics.json"), "date": time.strftime("%Y-%m-%d")}
    (RESULTS / f"run_{profile}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    if not keep:
        shutil.rmtree(out.parent, ignore_errors=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description="Run all benchmarks.")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test of the benchmarks)")
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(SCRIPTS))
    ap.add_argument("--run-profile", default="", help="also time `dopplerdiff run` with this profile")
    ap.add_argument("--keep-run", default="", help="run the timed job in this new folder and keep it")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.only.split(",") if n] or SCRIPTS
    unknown = sorted(set(names) - set(SCRIPTS))
    if unknown:
        sys.exit(f"error: unknown benchmark(s) {unknown}; valid: {', '.join(SCRIPTS)}")
    rows = []
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        rows.append(run_script(name, args.quick))
    if args.run_profile:
        res = time_run(args.run_profile, args.keep_run)
        rows.append({"name": f"run {args.run_profile}", "ok": res["ok"], "seconds": res["wall_min"] * 60})
        print(f"run {args.run_profile}: {res['wall_min']:.1f} min, peak RSS {res['peak_rss_mb']:.0f} MB")
    print(f"\n{'benchmark':<16}{'ok':>4}{'seconds':>10}  results")
    for r in rows:
        print(f"{r['name']:<16}{'yes' if r['ok'] else 'NO':>4}{r['seconds']:>10.1f}  "
              f"bench/results/{r['name'].replace(' ', '_')}.json")
    if not all(r["ok"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
