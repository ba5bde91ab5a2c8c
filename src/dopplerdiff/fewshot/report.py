"""The "Few windows" report of the novel-walkers experiment, rendered from its results JSON (written by
``experiment.run_fewshot``, so also ``bench/fewshot.py``'s files): per classifier architecture the
novel-person accuracy and gain over real only with 95% intervals for every arm and k, the base people's gain
(no harm), a plot of gain vs k, the open set, and sample strips (each novel person's k shots beside synthetic
windows of every method). One self-contained HTML file; a strip the results file does not name is said to be
missing.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.evaluate.plots import gain_vs_k_plot
from dopplerdiff.evaluate.report_html import PAGE_END, Raw, not_computed, page_head, png_b64, section, table
from dopplerdiff.utils.io import atomic_write_bytes, read_json

TITLE = "dopplerdiff few windows"


def _k_order(summary: dict[str, Any]) -> list[str]:
    return sorted(summary, key=int)


def _pct(d: dict | None) -> str:
    return "—" if not d else f"{100 * d['mean']:.1f}"


def _gain(d: dict | None, lower_better: bool = False) -> Raw:
    """A gain in points with its 95% interval, marked good / bad when the interval excludes 0 (a rise of
    an error rate, ``lower_better``, is bad)."""
    if not d:
        return Raw("—")
    text = f"{100 * d['mean']:+.1f}"
    ci = d.get("ci95")
    if not ci:
        return Raw(text)
    up, down = ("bad", "good") if lower_better else ("good", "bad")
    cls = up if ci[0] > 0 else down if ci[1] < 0 else ""
    text += f" <span class='sub'>[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]</span>"
    return Raw(f"<span class='{cls}'>{text}</span>" if cls else text)


def arch_table(summary: dict[str, Any], arch: str) -> str:
    """One architecture: a row per (k, arm)."""
    rows = []
    for k in _k_order(summary):
        for arm, r in summary[k].get(arch, {}).items():
            rows.append([k, arm, _pct(r.get("novel")), _gain(r.get("novel_gain_vs_real")),
                         _gain(r.get("novel_gain_vs_classic")), _pct(r.get("base")),
                         _gain(r.get("base_gain_vs_real"))])
    return table(["k", "arm", "novel-person accuracy %", "gain vs real [95% CI]", "gain vs classic [95% CI]",
                  "base-person accuracy %", "base gain vs real [95% CI]"], rows)


def gain_series(summary: dict[str, Any]) -> dict[str, dict[str, list[tuple[int, float, float, float]]]]:
    """arch -> arm -> [(k, gain, lo, hi)] in points, for every arm with a gain over real."""
    out: dict[str, dict[str, list[tuple[int, float, float, float]]]] = {}
    for k in _k_order(summary):
        for arch, arms in summary[k].items():
            for arm, r in arms.items():
                g = r.get("novel_gain_vs_real")
                if g:
                    lo, hi = g.get("ci95") or (g["mean"], g["mean"])
                    pts = (round(100 * v, 3) for v in (g["mean"], lo, hi))  # no 1e-17 float noise
                    out.setdefault(arch, {}).setdefault(arm, []).append((int(k), *pts))
    return out


def _open_set(osum: dict[str, Any] | None) -> str:
    if not osum:
        return not_computed("the run did not ask for the open set (--open-set)")
    rows = [[k, arm, _pct(r["rank1"]), _gain(r.get("rank1_gain_vs_real")), _pct(r["dir"]),
             _gain(r.get("dir_gain_vs_real")), _pct(r["eer"]),
             _gain(r.get("eer_gain_vs_real"), lower_better=True)]
            for k in _k_order(osum) for arm, r in osum[k].items()]
    return table(["k", "enrolled with", "rank-1 %", "gain", "DIR at target FAR %", "gain", "EER %",
                  "gain (lower is better)"], rows)


def _strips(result: dict[str, Any], base: Path | None) -> str:
    """Every stored strip inline; rows without one, or whose file is gone, said so."""
    rows = result.get("rows", [])
    if not any("strips" in r for r in rows):
        return ("<p class='note'>Sample strips are not stored in this results file (it was written before "
                "strips were saved, or without a strips folder).</p>")
    parts = []
    for r in rows:
        caption = f"fold {r['fold']}, k = {r['k']}: novel people {', '.join(r['novel'])}"
        path = (Path(base or ".") / r["strips"]) if "strips" in r else None
        if path is None or not path.is_file():
            parts.append(f"<p class='note'>{html.escape(caption)}: strip not found"
                         f"{' at ' + html.escape(str(path)) if path else ''}.</p>")
            continue
        alt = html.escape(caption + ": real shots, then synthetic windows per method", quote=True)
        parts.append(f"<figure><img class='px' src='{png_b64(path.read_bytes())}' alt='{alt}'>"
                     f"<figcaption class='sub'>{html.escape(caption)}</figcaption></figure>")
    return "".join(parts)


def _protocol(result: dict[str, Any]) -> str:
    folds = result.get("folds", [])
    novel = sorted({n for f in folds for n in f.get("novel", [])})
    ks = ", ".join(map(str, result.get("ks", [])))
    text = (f"Data {result.get('dataset')} ({result.get('profile')} profile): {len(folds)} leave-people-out "
            f"fold(s), novel people {', '.join(novel) or '—'}; k = {ks} "
            f"real windows per novel person (the first of its first recording; its test windows lie beyond "
            f"the guard gap); methods {', '.join(result.get('methods', []))}, "
            f"N = {', '.join(map(str, result.get('ns', [])))} synthetic windows per person; "
            f"{result.get('seeds')} classifier seed(s) x {len(folds)} fold(s), "
            f"{result.get('classifier_steps')} steps; gains are paired, in points, with 95% t-intervals.")
    return f"<p>{html.escape(text)}</p>"


def fewshot_section(result: dict[str, Any], base: Path | None = None) -> str:
    """The "Few windows" section's body; ``base`` is the folder the rows' strip paths are relative to."""
    summary = result.get("summary") or {}
    if not summary:
        return not_computed("no (fold, k) cell has finished yet")
    parts = [_protocol(result)]
    series = gain_series(summary)
    if series:
        parts.append(f"<img src='{png_b64(gain_vs_k_plot(series))}' alt='novel-person gain over real only "
                     "against k, per arm, with 95% intervals'>")
    archs = list(dict.fromkeys(a for k in summary for a in summary[k]))
    for arch in archs:
        parts.append(f"<h3>{html.escape(arch)} architecture</h3>{arch_table(summary, arch)}")
    parts.append(f"<h3>Open set</h3>{_open_set(result.get('open_set_summary'))}")
    parts.append(f"<h3>Sample strips</h3>{_strips(result, base)}")
    return "".join(parts)


def fewshot_page(result: dict[str, Any], base: Path | None = None) -> str:
    sub = html.escape(f"{result.get('dataset', '')} · {result.get('date', '')}")
    body = section("few-windows", "Few windows", fewshot_section(result, base))
    return "\n".join([page_head(TITLE, sub), body, PAGE_END])


def render_fewshot_report(result: dict[str, Any], out: Path, base: Path | None = None) -> Path:
    """Write the report page to ``out`` (atomically); strip paths resolve against ``base``."""
    atomic_write_bytes(Path(out), fewshot_page(result, base).encode("utf-8"))
    return Path(out)


def render_results_file(results: Path, out: Path | None = None) -> Path:
    """The report of a results JSON, written to ``out`` (default: the JSON's path with ``.html``)."""
    results = Path(results)
    if not results.is_file():
        raise DopplerDiffError(f"--report-only '{results}' is not a results file")
    result = read_json(results)
    if not isinstance(result, dict) or "rows" not in result or "ks" not in result:
        raise DopplerDiffError(f"--report-only '{results}' is not a few-shot results file (no rows / ks)")
    out = Path(out) if out is not None else results.with_suffix(".html")
    if out.is_dir() or out.suffix.lower() not in (".html", ".htm"):
        raise DopplerDiffError(f"--out '{out}' must be an .html file path for --report-only")
    return render_fewshot_report(result, out, results.parent)


# -- plain text (the command's and the bench's terminal output) ----------------------------------------------
def _text_cell(r: dict | None) -> str:
    if r is None:
        return "—"
    g, b = r.get("novel_gain_vs_real"), r.get("base_gain_vs_real")
    ci = g and g.get("ci95")
    txt = f"{100 * r['novel']['mean']:.1f}"
    if g:
        txt += f" {100 * g['mean']:+.1f}"
        txt += f" [{100 * ci[0]:+.1f},{100 * ci[1]:+.1f}]" if ci else ""
        txt += f" base {100 * b['mean']:+.1f}" if b else ""
    return txt


def text_table(summary: dict[str, Any]) -> str:
    """Novel-person accuracy and gain over real-only [95% CI] per arm (rows) and k x architecture."""
    cols = [(k, arch) for k, s in summary.items() for arch in s]
    lines = ["novel-person accuracy %, gain over real-only in points [95% CI]; base-people gain",
             f"{'arm':<22}" + "".join(f"{'k=' + k + ' ' + arch:>40}" for k, arch in cols)]
    arms = list(dict.fromkeys(a for k, arch in cols for a in summary[k][arch]))
    for arm in arms:
        cells = [_text_cell(summary[k][arch].get(arm)) for k, arch in cols]
        lines.append(f"{arm:<22}" + "".join(f"{c:>40}" for c in cells))
    return "\n".join(lines)


def text_open_set(summary: dict[str, Any]) -> str:
    """Open set per k and enrollment arm: rank-1, DIR at the target FAR and EER, % (gain over real)."""
    lines = ["open set (novel people enrolled in a gallery of a base-people encoder), %: rank-1 / DIR / EER"]
    for k, arms in summary.items():
        for arm, r in arms.items():
            cells = []
            for m in ("rank1", "dir", "eer"):
                g = r.get(f"{m}_gain_vs_real")
                cells.append(f"{100 * r[m]['mean']:.1f}" + (f" ({100 * g['mean']:+.1f})" if g else ""))
            lines.append(f"k={k:<4}{arm:<22}" + " / ".join(cells))
    return "\n".join(lines)


def text_summary(result: dict[str, Any]) -> str:
    """The tables the command and the bench print at the end."""
    parts = [text_table(result.get("summary") or {})]
    if result.get("open_set_summary"):
        parts.append(text_open_set(result["open_set_summary"]))
    return "\n\n".join(parts)
