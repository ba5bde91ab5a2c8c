"""The curve of bench/convergence.py: which numbers of evaluate's metrics.json are read, where each stops
improving, the table and the plot."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REL_NOISE, ABS_NOISE, GAIN_NOISE = 0.05, 0.02, 0.01  # stopping thresholds where evaluate gives no CI


@dataclass(frozen=True)
class Metric:
    """A curve read from metrics.json: ``path`` (dotted), its 95% CI (``ci``), which way is better
    (up, down, or 'one' = toward a ratio of 1), the stopping threshold without a CI, reference lines."""

    name: str
    path: str
    ci: str | None
    better: str
    rel: float | None = None
    abs: float | None = None
    refs: tuple[str, ...] = ()
    line: float | None = None


METRICS = (
    Metric("judge_accuracy", "judge.generated.overall", "judge.generated.ci95", "up", abs=ABS_NOISE,
           refs=("judge_accuracy_real", "judge_accuracy_reconstruction")),
    Metric("encoder_accuracy", "accuracy.generated.overall", "accuracy.generated.ci95", "up", abs=ABS_NOISE,
           refs=("encoder_accuracy_real", "encoder_accuracy_reconstruction")),
    Metric("fd", "distribution.gen_vs_test.fd", None, "down", rel=REL_NOISE,
           refs=("fd_floor_train_vs_test", "fd_floor_reconstruction")),
    Metric("kid", "distribution.gen_vs_test.kid_mean", None, "down", rel=REL_NOISE),
    Metric("precision", "distribution.gen_vs_test.precision", None, "up", abs=ABS_NOISE),
    Metric("recall", "distribution.gen_vs_test.recall", None, "up", abs=ABS_NOISE),
    Metric("c2st_accuracy", "c2st.generated.accuracy", "c2st.generated.ci95", "down", abs=ABS_NOISE,
           refs=("c2st_floor_train_vs_test",), line=0.5),
    Metric("c2st_no_border_accuracy", "c2st.generated_no_border.accuracy", "c2st.generated_no_border.ci95",
           "down", abs=ABS_NOISE, line=0.5),
    Metric("texture_hf_ratio", "texture.generated.ratio_to_real.high_frequency_ratio", None, "one",
           abs=REL_NOISE, line=1.0),
    Metric("texture_local_variance_ratio", "texture.generated.ratio_to_real.local_variance", None, "one",
           abs=REL_NOISE, line=1.0),
    Metric("texture_sparsity_ratio", "texture.generated.ratio_to_real.sparsity", None, "one", abs=REL_NOISE,
           line=1.0),
    Metric("texture_histogram_w1", "texture.generated.histogram_w1", None, "down", rel=REL_NOISE),
    # the paired gain of real+synthetic over real-only; its CI is the 'prior' strategy arm's (same runs)
    Metric("augmentation_gain_encoder", "augmentation.gain.mean",
           "augmentation.strategies.arms.prior.gain.ci95", "up", abs=GAIN_NOISE, line=0.0),
    Metric("augmentation_gain_judge", "augmentation_judge.gain.mean",
           "augmentation_judge.strategies.arms.prior.gain.ci95", "up", abs=GAIN_NOISE, line=0.0),
)
# floors and real-data references of the same evaluation (not curves: the first stage is fixed)
REFERENCES = {
    "judge_accuracy_real": "judge.real_test.overall",
    "judge_accuracy_reconstruction": "judge.reconstruction.overall",
    "encoder_accuracy_real": "accuracy.real_test.overall",
    "encoder_accuracy_reconstruction": "accuracy.reconstruction.overall",
    "fd_floor_train_vs_test": "distribution.train_vs_test.fd",
    "fd_floor_reconstruction": "distribution.recon_vs_test.fd",
    "c2st_floor_train_vs_test": "c2st.real_train_vs_test.accuracy",
    "augmentation_real_only_encoder": "augmentation.arms.real.mean",
    "augmentation_real_only_judge": "augmentation_judge.arms.real.mean",
}
def dig(metrics: dict[str, Any], path: str) -> Any:
    """metrics[a][b][c] for 'a.b.c' (keys may hold dots, e.g. 'real+synthetic' does not); None if absent."""
    node: Any = metrics
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def extract(metrics: dict[str, Any]) -> dict[str, Any]:
    """The curve values, their CIs and the references of one evaluation; what is absent is null."""
    values = {m.name: dig(metrics, m.path) for m in METRICS}
    cis = {m.name: dig(metrics, m.ci) if m.ci else None for m in METRICS}
    refs = {k: dig(metrics, p) for k, p in REFERENCES.items()}
    return {"metrics": values, "ci95": cis, "reference": refs, "missing_in_eval": metrics.get("missing", [])}


def _score(metric: Metric, value: float) -> float | None:
    """Larger is better: the value, its negative, or -|log ratio| for ratios that should be 1."""
    if metric.better == "up":
        return value
    if metric.better == "down":
        return -value
    return -abs(math.log(value)) if value > 0 else None


def _noise(metric: Metric, a: dict[str, Any], b: dict[str, Any]) -> tuple[float, str]:
    """How much better b must score than a to count: the two 95% CIs' half-widths in quadrature where
    evaluate gives CIs (conservative: the points share test windows and seeds), else the stated threshold."""
    ca, cb = a["ci95"].get(metric.name), b["ci95"].get(metric.name)
    if ca and cb and None not in (*ca, *cb):
        return math.hypot((ca[1] - ca[0]) / 2, (cb[1] - cb[0]) / 2), "95% CIs in quadrature"
    if metric.rel is not None:
        return metric.rel * abs(a["metrics"][metric.name]), f"{100 * metric.rel:g}% of the value"
    return float(metric.abs or 0.0), f"{metric.abs:g} absolute" + (" on |log ratio|" if metric.better == "one"
                                                                   else "")


def stopping(metric: Metric, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The first budget that no larger budget beats by more than the noise, or 'still improving'."""
    pts = [r for r in rows if r.get("metrics", {}).get(metric.name) is not None
           and _score(metric, r["metrics"][metric.name]) is not None]
    if len(pts) < 2:
        return {"plateau_at": None, "noise": None, "statement": "fewer than two budgets measured"}
    for i, a in enumerate(pts):
        beaten = [(b, *_noise(metric, a, b)) for b in pts[i + 1:]]
        if all(_score(metric, b["metrics"][metric.name]) - _score(metric, a["metrics"][metric.name]) <= n
               for b, n, _ in beaten):
            break
    how = _noise(metric, pts[max(i - 1, 0)], a)[1]
    if i == len(pts) - 1:
        return {"plateau_at": None, "noise": how,
                "statement": f"still improving at the largest budget ({a['budget']} steps)"}
    return {"plateau_at": a["budget"], "noise": how,
            "statement": f"stops improving at {a['budget']} steps (no larger budget better by more than "
                         f"the noise, {how})"}


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "—" if v is None else format(v, spec)


def print_table(result: dict[str, Any]) -> None:
    """One line per budget, then where each metric stops improving."""
    cols = [("judge", "judge_accuracy", ".3f"), ("enc", "encoder_accuracy", ".3f"), ("FD", "fd", ".2f"),
            ("prec", "precision", ".2f"), ("rec", "recall", ".2f"), ("C2ST", "c2st_accuracy", ".2f"),
            ("hf", "texture_hf_ratio", ".2f"), ("gain enc", "augmentation_gain_encoder", "+.3f"),
            ("gain jdg", "augmentation_gain_judge", "+.3f")]
    print(f"\n{'steps':>7}" + "".join(f"{c:>10}" for c, _, _ in cols) + f"{'FD floor':>10}{'train s':>9}"
          f"{'eval s':>8}")
    for r in result["rows"]:
        if r.get("status") != "done":
            print(f"{r['budget']:>7}  {r.get('status')}: {r.get('reason', '')}")
            continue
        m = r["metrics"]
        print(f"{r['budget']:>7}" + "".join(f"{_fmt(m[k], s):>10}" for _, k, s in cols)
              + f"{_fmt(r['reference']['fd_floor_train_vs_test'], '.2f'):>10}"
              + f"{_fmt(r.get('train_s'), '.0f'):>9}{_fmt(r.get('eval_s'), '.0f'):>8}")
    print()
    for name, s in result["stopping"].items():
        print(f"{name:<30} {s['statement']}")


def plot(result: dict[str, Any], path: Path) -> None:
    """One panel per metric vs diffusion steps (log x), 95% CIs where evaluate gives them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r.get("status") == "done"]
    cols, n = 4, math.ceil(len(METRICS) / 4)
    fig, axes = plt.subplots(n, cols, figsize=(4 * cols, 3 * n), squeeze=False)
    for ax, metric in zip(axes.flat, METRICS, strict=False):
        pts = [(r["budget"], r["metrics"][metric.name], r["ci95"][metric.name]) for r in rows
               if r["metrics"][metric.name] is not None]
        if pts:
            x, y = [p[0] for p in pts], [p[1] for p in pts]
            err = [[v - (c or [v, v])[0] for _, v, c in pts], [(c or [v, v])[1] - v for _, v, c in pts]]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3)
        for ref in metric.refs:
            vals = [r["reference"][ref] for r in rows if r["reference"].get(ref) is not None]
            if vals:
                ax.axhline(vals[-1], ls="--", lw=0.8, color="grey")
                ax.annotate(ref, (0.01, vals[-1]), xycoords=("axes fraction", "data"), fontsize=6)
        if metric.line is not None:
            ax.axhline(metric.line, color="k", lw=0.6)
        plateau = result["stopping"][metric.name]["plateau_at"]
        if plateau:
            ax.axvline(plateau, color="tab:red", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xticks([r["budget"] for r in rows], [str(r["budget"]) for r in rows], fontsize=7)
        ax.minorticks_off()
        ax.set_title(metric.name, fontsize=9)
    for ax in list(axes.flat)[len(METRICS):]:
        ax.axis("off")
    fig.supxlabel("diffusion optimiser steps (log)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
