"""Report table: the strategy arms of the augmentation experiment (gain over real-only per strategy)."""

from __future__ import annotations

from typing import Any

from dopplerdiff.evaluate.report_html import fmt, table


def _gain(entry: dict[str, Any] | None) -> str:
    """'+0.031 [-0.010, +0.072]' (mean paired gain and its 95% t-interval over seeds)."""
    if not entry:
        return "—"
    g = entry["gain"]
    ci = g.get("ci95")
    return f"{g['mean']:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")


def _recommendation(rec: dict[str, Any] | None) -> str:
    if not rec or not rec.get("best"):
        return ""
    gains = ", ".join(f"{a} {g:+.3f}" for a, g in rec["gain"].items())
    if rec["strategy"]:
        return f"<p><b>Recommended: {rec['strategy']}</b> (gain {gains}; rule: {rec['rule']}).</p>"
    return (f"<p><b>Recommended: real windows only.</b> The best arm, {rec['best']} (gain {gains}), is not "
            f"significantly above real-only under every architecture (rule: {rec['rule']}).</p>")


def strategy_table(m: dict[str, Any]) -> str:
    """HTML table of every strategy arm under both classifier architectures ('' when there are none)."""
    enc = (m.get("augmentation") or {}).get("strategies") or {}
    judge = (m.get("augmentation_judge") or {}).get("strategies") or {}
    recipes = m.get("augmentation_strategies") or {}
    names = list(recipes) or list(enc.get("arms", {}))
    if not names:
        return ""
    rows = []
    for name in names:
        e, j, r = enc.get("arms", {}).get(name), judge.get("arms", {}).get(name), recipes.get(name, {})
        rows.append([name, e["accuracy"]["mean"] if e else None, _gain(e), _gain(j),
                     e["synthetic_per_identity"] if e else None, e.get("synthetic_to_real") if e else None,
                     e.get("synthetic_weight") if e else None, r.get("recall"), r.get("precision")])
    base = fmt(enc.get("baseline", {}).get("mean"))
    jbase = fmt(judge.get("baseline", {}).get("mean")) if judge else "—"
    note = (f"<p class='note'>Real-only baseline: {base} (encoder architecture), {jbase} (judge "
            f"architecture). Gain = arm minus real-only with the same seed, mean and 95% t-interval over "
            f"seeds {enc.get('seeds')}. 'simpre' pre-trains the classifier on simulated walkers; 'w:W' "
            "weighs the synthetic windows' loss by W, 'n:N' adds N of them per identity. Recall and "
            "precision: k-NN, the arm's synthetic windows vs real test in encoder features.</p>")
    return "<h3>Strategies</h3>" + _recommendation(m.get("augmentation_recommendation")) + table(
        ["strategy", "accuracy (encoder arch.)", "gain, encoder arch. [95% CI]", "gain, judge arch. [95% CI]",
         "synthetic / identity", "synthetic : real", "loss weight", "recall", "precision"], rows) + note
