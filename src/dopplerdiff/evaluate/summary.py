"""Headline numbers of an evaluation (metrics.json) as (label, value) rows for the CLI table."""

from __future__ import annotations

from typing import Any


def summary_rows(m: dict[str, Any]) -> list[tuple[str, str]]:
    """Headline numbers as (label, value) rows for the CLI table."""

    def f(v: Any, d: int = 3) -> str:
        return "—" if v is None else f"{v:.{d}f}"

    rows = []
    acc, dist = m.get("accuracy", {}), m.get("distribution", {})
    for key, label in (("real_test", "accuracy real test"), ("generated", "accuracy generated"),
                       ("reconstruction", "accuracy test reconstructions")):
        if acc.get(key):
            lo, hi = acc[key]["ci95"]
            rows.append((label, f"{f(acc[key]['overall'])} [{f(lo)}, {f(hi)}]"))
    if acc.get("ratio") is not None:
        rows.append(("generated / real accuracy", f(acc["ratio"])))
    for key, label in (("gen_vs_test", "generated vs test"), ("train_vs_test", "floor train vs test"),
                       ("recon_vs_test", "floor recon vs test")):
        if dist.get(key):
            rows.append((f"FD / KID {label}", f"{f(dist[key]['fd'])} / {f(dist[key]['kid_mean'], 4)}"))
    if dist.get("gen_vs_test", {}).get("precision") is not None:
        d = dist["gen_vs_test"]
        rows.append(("precision / recall (generated)", f"{f(d['precision'])} / {f(d['recall'])}"))
    if m.get("memorisation"):
        mem = m["memorisation"]
        rows.append(("memorisation flagged", f"{mem['flagged']} / {mem['total']} "
                                             f"(chance ~{mem['expected_fraction']:.2f})"))
    if m.get("augmentation"):
        for arm, v in m["augmentation"]["arms"].items():
            rows.append((f"augmentation: {arm}", f"{f(v['mean'])} ± {f(v['std'])}"))
    judge = m.get("judge") or {}
    for key in ("real_test", "reconstruction", "generated"):
        if judge.get(key):
            lo, hi = judge[key]["ci95"]
            value = f"{f(judge[key]['overall'])} [{f(lo)}, {f(hi)}]"
            rows.append((f"judge accuracy {key.replace('_', ' ')}", value))
    for key, v in (m.get("c2st") or {}).items():
        if isinstance(v, dict) and "accuracy" in v:
            rows.append((f"C2ST {key.replace('_', ' ')}", f"{f(v['accuracy'])} (0.5 = indistinguishable)"))
    tex = m.get("texture") or {}
    for key in ("reconstruction", "generated"):
        if tex.get(key):
            ratio = tex[key]["ratio_to_real"]["high_frequency_ratio"]
            rows.append((f"high-frequency energy {key} / real", f(ratio)))
    if (m.get("augmentation_judge") or {}).get("gain"):
        g = m["augmentation_judge"]["gain"]
        rows.append(("augmentation gain (judge)", f"{g['mean']:+.3f} ± {f(g['std'])}"))
    for row in m.get("guidance_sweep") or []:
        rows.append((f"guidance {row['guidance']:g}", f"accuracy {f(row['accuracy'])}, FD {f(row['fd'])}"))
    return rows


def headline_scalars(m: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of :func:`summary_rows` as flat ``group/name`` scalars for dashboards."""
    out: dict[str, float] = {}
    acc, dist = m.get("accuracy") or {}, m.get("distribution") or {}
    for key in ("real_test", "generated", "reconstruction"):
        if (acc.get(key) or {}).get("overall") is not None:
            out[f"accuracy/{key}"] = acc[key]["overall"]
    if acc.get("ratio") is not None:
        out["accuracy/generated_over_real"] = acc["ratio"]
    for key, d in dist.items():
        for stat in ("fd", "kid_mean", "precision", "recall"):
            if isinstance(d, dict) and isinstance(d.get(stat), int | float):
                out[f"distribution/{key}/{stat}"] = d[stat]
    for group in ("judge", "c2st"):
        for key, v in (m.get(group) or {}).items():
            value = v.get("overall", v.get("accuracy")) if isinstance(v, dict) else None
            if isinstance(value, int | float):
                out[f"{group}/{key}"] = value
    if m.get("memorisation"):
        mem = m["memorisation"]
        out["memorisation/flagged_fraction"] = mem["flagged"] / max(mem["total"], 1)
    return {k: float(v) for k, v in out.items()}
