"""Hostile battery: every CLI command with hostile arguments, damaged run files, kills and races.

    OMP_NUM_THREADS=1 python bench/hostile.py [--work DIR] [--only TEXT,TEXT] [--update] [--jobs 2] [--keep]

Builds one smoke run (simulate + every stage at smoke sizes, ``dopplerdiff run --profile smoke``) and an
embedding index in a temporary folder, then runs each case of bench/hostile_cases.py as a subprocess and
the multi-process scenarios below (killed mid-write, run twice at once). For every case it records the
command, the expected outcome, the exit code, whether stderr held a traceback, whether the run, the index
and the data were unchanged (a hash of each folder before and after) and a verdict. Prints counts by
category and writes bench/results/hostile.json.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hostile_cases import Case, one_command_cases

RESULTS = Path(__file__).parent / "results" / "hostile.json"
SRC = Path(__file__).resolve().parents[1] / "src"
TIMEOUT_S = 300
TRACEBACK = "Traceback (most recent call last)"


def env() -> dict[str, str]:
    e = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", COLUMNS="200",
             TOKENIZERS_PARALLELISM="false")
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    return e


def command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "dopplerdiff", *args]


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command(args), env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(proc: subprocess.Popen, timeout: float = TIMEOUT_S) -> tuple[int, str]:
    """(exit code, stderr); a command past ``timeout`` is killed and reported as -9."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return -9, err + "\n(timed out)"
    return proc.returncode, err


def cli(args: list[str]) -> tuple[int, str]:
    return finish(start(args))


def tree_hash(*roots: Path) -> str:
    """One hash of every file's path and bytes under ``roots`` (lock files, which readers create, skipped)."""
    h = hashlib.sha256()
    for root in roots:
        if not root.exists():
            h.update(f"{root}: missing".encode())
            continue
        for p in sorted(root.rglob("*")):
            if p.is_file() and not p.name.endswith(".lock"):
                h.update(str(p.relative_to(root)).encode())
                h.update(p.read_bytes())
    return h.hexdigest()


# --- the workspace -------------------------------------------------------------------------------

def build(work: Path) -> dict[str, Path]:
    """The smoke run, its index and the fixture files every case's placeholders name."""
    base, idx = work / "base", work / "base_idx"
    for args in (["run", "--profile", "smoke", "--out", str(base), "-q"],
                 ["embed", "-e", str(base / "encoder"), "-i", str(idx), "-c", "smoke", "-q"]):
        code, err = cli(args)
        if code:
            raise SystemExit(f"building the smoke run failed: {' '.join(args)}\n{err}")
    shutil.copytree(base, work / "run")
    shutil.copytree(idx, work / "idx")
    return dict(fixtures(work, base / "data"), base=base, base_idx=idx, run=work / "run", idx=work / "idx")


SCENARIOS = ("killed mid-write", "run twice at once")  # categories of the multi-process scenarios

def fixtures(work: Path, data: Path) -> dict[str, Path]:
    """Windows, a text file named .png, an empty folder and a DATA/<condition>/ID_k copy of ``data``."""
    fx = work / "fixtures"
    (fx / "empty").mkdir(parents=True)
    for i, w in enumerate(sorted((data / "ID_1").glob("*.png"))[:3], 1):
        shutil.copy(w, fx / f"w{i}.png")
    (fx / "notimg.png").write_text("this is not an image\n")
    (fx / "notes.txt").write_text("a text file\n")
    for cond, ids in (("Normal_line", ("ID_1", "ID_2")), ("Backpack_line", ("ID_1",))):
        for ident in ids:
            shutil.copytree(data / ident, fx / "nested" / cond / ident)
            shutil.copytree(data / ident, fx / "mixed" / cond / ident)
    shutil.copytree(data / "ID_2", fx / "mixed" / "ID_2")  # an identity folder beside condition folders
    shutil.copytree(fx / "nested", fx / "condempty")
    (fx / "condempty" / "Free_walk" / "notes").mkdir(parents=True)  # no identities inside
    return {"work": work, "data": data, "notimg": fx / "notimg.png", "txt": fx / "notes.txt",
            "empty": fx / "empty", "nested": fx / "nested", "mixed": fx / "mixed",
            "condempty": fx / "condempty", "w1": fx / "w1.png", "w2": fx / "w2.png", "w3": fx / "w3.png"}


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_split(run: Path, entry: str) -> None:
    d = json.loads((run / "data.json").read_text())
    d["split"]["train"][0] = entry
    (run / "data.json").write_text(json.dumps(d))


def _set_root(run: Path, root: str) -> None:
    d = json.loads((run / "data.json").read_text())
    d["data_root"] = root
    (run / "data.json").write_text(json.dumps(d))


DAMAGE = {
    "model_index": lambda r, i, w: _truncate(r / "pipeline" / "model_index.json"),
    "data_json": lambda r, i, w: _truncate(r / "data.json"),
    "latents_info": lambda r, i, w: _truncate(r / "latents" / "info.json"),
    "config_yaml": lambda r, i, w: _truncate(r / "config.yaml"),
    "enrolled_json": lambda r, i, w: (r / "pipeline" / "enrolled.json").write_text("{\"enrolled\": [{"),
    "no_pipeline": lambda r, i, w: shutil.rmtree(r / "pipeline"),
    "index_meta": lambda r, i, w: _truncate(i / "meta.json"),
    "ae_weights": lambda r, i, w: _truncate(r / "autoencoder" / "diffusion_pytorch_model.safetensors"),
    "denoiser_weights": lambda r, i, w: _truncate(
        next((r / "pipeline" / "denoiser").glob("*.safetensors"))),
    # a real image outside the data root, reached through ../ or an absolute path
    "traversal": lambda r, i, w: _edit_split(r, "ID_1/../../../fixtures/w1.png"),
    "absolute": lambda r, i, w: _edit_split(r, str(w / "fixtures" / "w1.png")),
    "root_missing": lambda r, i, w: _set_root(r, str(w / "no-such-data")),
}


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)[:60]


def case_paths(case: Case, ws: dict[str, Path]) -> dict[str, Path]:
    """The case's own copy of the run and the index (damaged as the case says), so cases run in parallel."""
    here = ws["work"] / "cases" / _slug(case.name)
    paths = dict(ws, out=ws["work"] / "outs" / _slug(case.name), run=here / "run", idx=here / "idx")
    for key, src in (("run", "base"), ("idx", "base_idx")):
        if ws.get(src) and ws[src].exists():
            shutil.copytree(ws[src], paths[key])
    if case.damage:
        DAMAGE[case.damage](paths["run"], paths["idx"], ws["work"])
    return paths


def fill(args: list[str], paths: dict[str, Path]) -> list[str]:
    return [a.format(**{k: str(v) for k, v in paths.items()}) for a in args]


# --- verdicts ------------------------------------------------------------------------------------

def judge(expect: str, code: int, err: str, unchanged: bool, out_absent: bool) -> tuple[bool, str]:
    """(passed, why) for one finished command."""
    tb = TRACEBACK in err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    if tb:
        return False, "traceback"
    if not unchanged:
        return False, "run, index or data changed"
    if expect == "ok":
        return (code == 0, "ok" if code == 0 else f"exit {code}")
    if code == 2 and len(errors) != 1:
        return False, f"exit 2 with {len(errors)} error lines"
    if code == 2 and not out_absent:
        return False, "failed but left --out behind"
    if expect == "clean":
        return (code in (0, 2), "clean" if code in (0, 2) else f"exit {code}")
    return (code == 2, "one clear error" if code == 2 else f"exit {code}, expected 2")


def record(case: Case, args: list[str], code: int, err: str, unchanged: bool, out_absent: bool) -> dict:
    ok, why = judge(case.expect, code, err, unchanged, out_absent)
    last = [ln for ln in err.strip().splitlines() if ln.strip()]
    return {"name": case.name, "category": case.category, "command": "dopplerdiff " + " ".join(args),
            "expect": case.expect, "exit": code, "traceback": TRACEBACK in err, "unchanged": unchanged,
            "stderr_last": last[-1][:300] if last else "", "passed": ok, "verdict": why}


def run_case(case: Case, ws: dict[str, Path]) -> dict:
    """Run one single-command case on its own copy of the run; hash run, index and data around it."""
    paths = case_paths(case, ws)
    watched = (paths["run"], paths["idx"], paths["data"])
    before = tree_hash(*watched)
    args = fill(case.args, paths)
    t0 = time.monotonic()
    code, err = cli(args)
    unchanged = case.writes or tree_hash(*watched) == before
    res = record(case, args, code, err, unchanged, not paths["out"].exists())
    res["seconds"] = round(time.monotonic() - t0, 1)
    if res["passed"]:  # a failed case's copy stays for a look (with --work or --keep)
        shutil.rmtree(paths["run"].parent, ignore_errors=True)
    return res


# --- killed mid-write and run twice at once ------------------------------------------------------

def fresh(ws: dict[str, Path], name: str) -> tuple[Path, Path]:
    here = ws["work"] / "cases" / _slug(name)
    shutil.copytree(ws["base"], here / "run")
    shutil.copytree(ws["base_idx"], here / "idx")
    return here / "run", here / "idx"


def step(name: str, category: str, args: list[str], code: int, err: str, expect: str,
         passed: bool | None = None, why: str = "") -> dict:
    ok, verdict = judge(expect, code, err, True, True)
    if passed is not None:
        ok, verdict = passed and ok, why or verdict
    return {"name": name, "category": category, "command": "dopplerdiff " + " ".join(map(str, args)),
            "expect": expect, "exit": code, "traceback": TRACEBACK in err, "unchanged": None,
            "stderr_last": (err.strip().splitlines() or [""])[-1][:300], "passed": ok, "verdict": verdict}


def kill_after(args: list[str], delay: float) -> tuple[int, str]:
    proc = start(args)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    return finish(proc)


def killed(ws: dict[str, Path], fractions=(0.8,)) -> list[dict]:
    """SIGKILL a writer at fractions of its normal duration; the run must load and the rerun must work."""
    c, out = SCENARIOS[0], []
    run, idx = fresh(ws, "killed")
    w = [str(ws[k]) for k in ("w1", "w2", "w3")]
    gen_check = ["generate", "-r", str(run), "-o", "{out}", "-i", "ID_1", "-n", "1", "-q"]
    id_check = ["identify", "-i", str(idx), "-c", "smoke", "-q", w[0]]
    writers = {  # what: (command for a tag, the command that must still work afterwards)
        "enroll-generator": (lambda tag: ["enroll-generator", "-r", str(run), "-i", f"kim{tag}",
                                          "--steps", "3", "-q", *w], gen_check),
        "generate": (lambda tag: ["generate", "-r", str(run), "-o", str(ws["work"] / f"killed_gen{tag}"),
                                  "--all", "-n", "4", "-q"], gen_check),
        "enroll": (lambda tag: ["enroll", "-i", str(idx), "-c", "smoke", "-n", f"kim{tag}", "-q", *w],
                   id_check),
        "embed --overwrite": (lambda tag: ["embed", "-e", str(run / "encoder"), "-i", str(idx), "-c", "smoke",
                                           "--overwrite", "-q"], id_check),
    }
    for what, (make, check) in writers.items():
        t0 = time.monotonic()
        code, err = cli(make("T"))
        total = time.monotonic() - t0
        out.append(step(f"{what}: normal run (timing)", c, make("T"), code, err, "ok"))
        for frac in fractions:
            tag = f"{int(frac * 100)}"
            kill_after(make(tag), frac * total)
            code, err = cli(make(tag))  # the rerun: works, or says clearly that the first one had finished
            out.append(step(f"{what}: killed at {tag}% then rerun", c, make(tag), code, err, "clean"))
            chk = [a.replace("{out}", str(ws["work"] / f"check_{_slug(what)}{tag}")) for a in check]
            code, err = cli(chk)
            out.append(step(f"{what}: killed at {tag}%: {chk[0]} still works", c, chk, code, err, "ok"))
    return out


def _pair(a: list[str], b: list[str]) -> list[tuple[int, str]]:
    procs = [start(a), start(b)]
    return [finish(p) for p in procs]


def concurrent(ws: dict[str, Path]) -> list[dict]:
    """Two writers started together: both results kept, or one clear error; nothing lost."""
    c, out = SCENARIOS[1], []
    run, idx = fresh(ws, "concurrent")
    w = [str(ws[k]) for k in ("w1", "w2", "w3")]
    eg = [["enroll-generator", "-r", str(run), "-i", n, "--steps", "3", "-q", *w] for n in ("ann", "ben")]
    res = _pair(*eg)
    both = all(code == 0 for code, _ in res)
    for args, (code, err) in zip(eg, res, strict=True):
        out.append(step(f"two enroll-generator at once: {args[4]}", c, args, code, err, "ok"))
    chk = ["generate", "-r", str(run), "-o", str(ws["work"] / "conc_check"), "-i", "ann", "-i", "ben",
           "-n", "1"]
    code, err = cli(chk)
    out.append(step("two enroll-generator at once: both people kept", c, chk, code, err, "ok", both))
    gen = ["generate", "-r", str(run), "-o", str(ws["work"] / "conc_gen"), "--all", "-n", "2", "-q"]
    res = _pair(gen, gen)
    codes = sorted(code for code, _ in res)
    manifest = (ws["work"] / "conc_gen" / "manifest.json").is_file()
    err = "\n".join(e for code, e in res if code)
    out.append(step("two generate -o same at once: one output, one clear error", c, gen, codes[-1], err,
                    "error", codes == [0, 2] and manifest, f"exits {codes}, manifest {manifest}"))
    en = [["enroll", "-i", str(idx), "-c", "smoke", "-n", n, "-q", *w] for n in ("ann", "ben")]
    res = _pair(*en)
    for args, (code, err) in zip(en, res, strict=True):
        out.append(step(f"two enroll at once: {args[6]}", c, args, code, err, "ok"))
    for n in ("ann", "ben"):
        rm = ["remove", "-i", str(idx), "-c", "smoke", "-n", n, "-q"]
        code, err = cli(rm)
        out.append(step(f"two enroll at once: {n} kept (remove works)", c, rm, code, err, "ok"))
    return out


# --- the report ----------------------------------------------------------------------------------

def summary(results: list[dict]) -> dict:
    cats: dict[str, dict[str, int]] = {}
    for r in results:
        c = cats.setdefault(r["category"], {"cases": 0, "passed": 0, "failed": 0})
        c["cases"] += 1
        c["passed" if r["passed"] else "failed"] += 1
    total = {k: sum(c[k] for c in cats.values()) for k in ("cases", "passed", "failed")}
    return {"total": total, "by_category": cats}


def print_table(s: dict, results: list[dict]) -> None:
    print(f"\n{'category':<20} {'cases':>6} {'passed':>7} {'failed':>7}")
    for name, c in [*s["by_category"].items(), ("total", s["total"])]:
        print(f"{name:<20} {c['cases']:>6} {c['passed']:>7} {c['failed']:>7}")
    for r in results:
        if not r["passed"]:
            print(f"FAIL [{r['category']}] {r['name']}: {r['verdict']} (exit {r['exit']}) {r['stderr_last']}")


def _announce(res: dict) -> dict:
    print(("pass " if res["passed"] else "FAIL ") + f"[{res['category']}] {res['name']}", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, help="Workspace folder (default: a temporary one, removed after).")
    ap.add_argument("--only", default="",
                    help="Only cases whose name contains one of these comma-separated texts "
                    "('killed mid-write', 'run twice at once': those scenarios).")
    ap.add_argument("--jobs", type=int, default=2, help="Single-command cases run this many at a time.")
    ap.add_argument("--update", action="store_true",
                    help="Merge into the existing --results file (cases rerun with --only replace theirs).")
    ap.add_argument("--keep", action="store_true", help="Keep the temporary workspace.")
    ap.add_argument("--results", type=Path, default=RESULTS)
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="dd-hostile-"))
    t0 = time.monotonic()
    ws = build(work)
    only = [o for o in a.only.split(",") if o] or [""]
    cases = [c for c in one_command_cases() if any(o in c.name for o in only)]
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        results = list(pool.map(lambda case: _announce(run_case(case, ws)), cases))
    if any(o in SCENARIOS[0] for o in only):
        results += killed(ws)
    if any(o in SCENARIOS[1] for o in only):
        results += concurrent(ws)
    if a.update and a.results.is_file():  # replace the rerun cases in the earlier full results
        rerun = {r["name"] for r in results}
        earlier = json.loads(a.results.read_text())
        known = {c.name for c in one_command_cases()}  # cases since removed or renamed are dropped
        results = [r for r in earlier["cases"] if r["name"] not in rerun
                   and (r["name"] in known or r["category"] in SCENARIOS)] + results
    s = summary(results)
    print_table(s, results)
    a.results.parent.mkdir(parents=True, exist_ok=True)
    minutes = round((time.monotonic() - t0) / 60, 1)
    if a.update and a.results.is_file():  # the duration of the full run the results come from
        minutes = earlier.get("minutes", minutes)
    report = {"date": datetime.date.today().isoformat(), "minutes": minutes, **s, "cases": results}
    a.results.write_text(json.dumps(report, indent=2).replace(str(work), "$WORK"))  # no machine paths
    if not (a.work or a.keep):
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
