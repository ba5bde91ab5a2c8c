"""`dopplerdiff fewshot`: the novel-walkers experiment end to end on tiny simulated data (smoke profile), its
"Few windows" report (also of the stored bench results), resuming, and bad input (exit 2, nothing written)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
BENCH_JSON = ROOT / "bench" / "results" / "fewshot_real_k5.json"
TINY = ["--profile", "smoke", "--novel", "ID_3", "--k", "1", "--n", "2", "--methods", "row,seeded",
        "--strengths", "0.5", "--seeds", "1", "--adapt-steps", "2", "--classifier-steps", "2",
        "--device", "cpu"]


@pytest.fixture(scope="module")
def done(tmp_path_factory, sim_data):
    """One finished tiny experiment through the real entry point: (OUT, exit code)."""
    from dopplerdiff.cli import main

    out = tmp_path_factory.mktemp("fewshot") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["dopplerdiff", "fewshot", "--data", str(sim_data), "--out", str(out), *TINY])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return out, code


def test_command_writes_results_report_and_strips(done):
    out, code = done
    assert code == 0
    result = json.loads((out / "results.json").read_text())
    assert [(r["fold"], r["k"], r["novel"]) for r in result["rows"]] == [(0, 1, ["ID_3"])]
    assert sorted(result["summary"]["1"]) == ["encoder", "judge"]
    assert set(result["summary"]["1"]["encoder"]) == {"real", "classic", "real+row/n2", "classic+row/n2",
                                                      "real+seeded0.5/n2", "classic+seeded0.5/n2"}
    # the fold's run saw the base people only
    assert json.loads((out / "fold0" / "run" / "data.json").read_text())["identities"] == ["ID_1", "ID_2"]
    strip = out / result["rows"][0]["strips"]
    assert strip == out / "strips" / "fold0_k1.png"
    with Image.open(strip) as im:  # 3 labelled rows: the shot, then 2 windows of each method (64 px cells)
        assert im.height == 3 * (64 + 2) + 2
    page = (out / "report.html").read_text()
    assert "Few windows" in page and "encoder architecture" in page and "judge architecture" in page
    assert "real+seeded0.5/n2" in page and "fold 0, k = 1: novel people ID_3" in page
    assert page.count("data:image/png;base64,") == 2  # the gain-vs-k plot and the strip


def test_results_keep_the_bench_format(done):
    """The stored bench file's keys (top level, rows, summary cells) are all still written."""
    out = done[0]
    new, old = json.loads((out / "results.json").read_text()), json.loads(BENCH_JSON.read_text())
    assert set(old) <= set(new)
    assert set(old["rows"][0]) <= set(new["rows"][0])
    old_cell = old["summary"]["5"]["encoder"]["real+row/n64"]
    new_cell = new["summary"]["1"]["encoder"]["real+row/n2"]
    assert set(old_cell) == set(new_cell) and set(old_cell["novel_gain_vs_real"]) == set(
        new_cell["novel_gain_vs_real"])


def test_existing_results_are_refused_then_resumed(done, sim_data, cli):
    out = done[0]
    before = (out / "results.json").read_bytes()
    code, _, err = cli("fewshot", "--data", sim_data, "--out", out, *TINY)
    assert code == 2 and "--out" in err and "--resume" in err
    assert (out / "results.json").read_bytes() == before
    other = list(TINY)
    other[other.index("--k") + 1] = "2"
    code, _, err = cli("fewshot", "--data", sim_data, "--out", out, "--resume", *other)
    assert code == 2 and "other settings (ks)" in err
    assert (out / "results.json").read_bytes() == before
    code, stdout, _ = cli("fewshot", "--data", sim_data, "--out", out, "--resume", *TINY)
    assert code == 0 and "real+row/n2" in stdout  # every cell was done: nothing recomputed
    assert json.loads((out / "results.json").read_bytes())["rows"] == json.loads(before)["rows"]


def test_report_renders_the_stored_bench_results(tmp_path, cli):
    target = tmp_path / "bench.html"
    code, _, err = cli("fewshot", "--report-only", BENCH_JSON, "--out", target)
    assert code == 0, err
    page = target.read_text()
    assert "Few windows" in page and "encoder architecture" in page and "judge architecture" in page
    assert "+16.6" in page and "[+11.3, +21.8]" in page  # real+seeded0.5/n64, encoder (docs/results.md)
    assert "Sample strips are not stored" in page
    assert page.count("data:image/png;base64,") == 1  # the plot


def test_report_names_a_missing_strip(done, tmp_path, cli):
    out = done[0]
    results = tmp_path / "results.json"
    results.write_text((out / "results.json").read_text())  # the strip path no longer resolves from here
    code, _, _ = cli("fewshot", "--report-only", results)
    assert code == 0
    assert "strip not found" in (tmp_path / "results.html").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--k", "20"], "--k: k=20 is larger than what novel person 'ID_3' has"),
    (["--k", "10"], "--k: novel person 'ID_3' has no window after its k=10 shots"),
    (["--novel", "ID_3,ID_9"], "--novel: novel people ID_9 are not identities"),
    (["--k", "1,x"], "--k takes comma-separated positive integers, got '1,x'"),
    (["--n", "0"], "--n takes comma-separated positive integers"),
    (["--strengths", "0.5,2"], "--strengths takes comma-separated numbers in (0, 1]"),
    (["--methods", "row,lora"], "--methods takes row, seeded, tuned"),
    (["--seeds", "0"], "--seeds"),
    (["--architectures", "encoder,resnet"], "--architectures takes encoder, judge"),
])
def test_bad_input_is_one_error_and_writes_nothing(args, message, sim_data, tmp_path, cli):
    out = tmp_path / "out"
    code, _, err = cli("fewshot", "--data", sim_data, "--out", out, *TINY, *args)
    assert code == 2 and err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_missing_data_and_non_results_json_are_refused(tmp_path, cli):
    code, _, err = cli("fewshot", "--data", tmp_path / "nope", "--out", tmp_path / "out")
    assert code == 2 and "--data" in err and not (tmp_path / "out").exists()
    other = tmp_path / "other.json"
    other.write_text('{"a": 1}')
    code, _, err = cli("fewshot", "--report-only", other)
    assert code == 2 and "not a few-shot results file" in err and not (tmp_path / "other.html").exists()
    code, _, err = cli("fewshot", "--out", tmp_path / "out")
    assert code == 2 and "--data DIR and --out DIR" in err


def test_data_with_conditions_is_refused(sim_data, tmp_path, cli):
    import shutil

    data = tmp_path / "data"
    for cond in ("normal", "backpack"):
        for person in ("ID_1", "ID_2", "ID_3"):
            shutil.copytree(sim_data / person, data / cond / person)
    code, _, err = cli("fewshot", "--data", data, "--out", tmp_path / "out", *TINY)
    assert code == 2 and "holds walking conditions (backpack, normal)" in err
    assert "pass one condition folder" in err
    assert not (tmp_path / "out").exists()


def test_an_interrupted_cell_keeps_the_arms_it_measured(sim_data, tmp_path, cli, monkeypatch):
    """A (fold, k) cell stopped after its first arm: the results file holds that arm under in_progress
    (not in rows, so --resume recomputes the cell), and the sample strip was already drawn."""
    from dopplerdiff.errors import DopplerDiffError
    from dopplerdiff.fewshot import experiment

    real_fitters = experiment.fitters
    calls = []

    def stopping(*args, **kwargs):
        fits = real_fitters(*args, **kwargs)

        def once(arch):
            def fit(*a, **kw):
                calls.append(arch)
                if len(calls) == 2:
                    raise DopplerDiffError("stopped for the test")
                return fits[arch](*a, **kw)
            return fit
        return {arch: once(arch) for arch in fits}

    monkeypatch.setattr(experiment, "fitters", stopping)
    out = tmp_path / "out"
    code, _, err = cli("fewshot", "--data", sim_data, "--out", out, *TINY)
    assert code == 2 and "stopped for the test" in err
    result = json.loads((out / "results.json").read_text())
    assert result["rows"] == [] and not result.get("summary")
    partial = result["in_progress"]
    assert (partial["fold"], partial["k"]) == (0, 1)
    enc = partial["cells"]["encoder"]
    assert list(enc) == ["real"] and len(enc["real"]["novel"]) == 1
    assert "real" in partial["summary"]["encoder"]
    assert (out / "strips" / "fold0_k1.png").is_file()


def test_one_architecture_scores_only_its_arms(sim_data, tmp_path, cli):
    """--architectures judge: the encoder architecture trains nothing; a resume must keep the choice, and a
    results file from before the option (no 'architectures' key) resumes as both."""
    out = tmp_path / "out"
    args = [*TINY[:TINY.index("--methods")], "--methods", "copies", "--seeds", "1", "--adapt-steps", "2",
            "--classifier-steps", "2", "--device", "cpu"]
    code, _, err = cli("fewshot", "--data", sim_data, "--out", out, "--architectures", "judge", *args)
    assert code == 0, err
    result = json.loads((out / "results.json").read_text())
    assert result["architectures"] == ["judge"]
    assert list(result["rows"][0]["cells"]) == ["judge"] and list(result["summary"]["1"]) == ["judge"]
    assert set(result["summary"]["1"]["judge"]) == {"real", "classic", "real+copies/n2", "classic+copies/n2"}
    code, _, err = cli("fewshot", "--data", sim_data, "--out", out, "--resume", *args)
    assert code == 2 and "other settings (architectures)" in err
    del result["architectures"]
    (out / "results.json").write_text(json.dumps(result))
    code, _, err = cli("fewshot", "--data", sim_data, "--out", out, "--resume", *args)
    assert code == 0, err  # read as both architectures: the settings match, the judge cell is kept
