"""Report section: what the independent judge, the two-sample tests and the texture statistics say."""

from __future__ import annotations

from typing import Any

from dopplerdiff.evaluate.report_html import Raw, ci, fmt, not_computed, png_b64, table

SETS = (("real_test", "real test windows (reference)"), ("reconstruction", "test reconstructions"),
        ("generated", "generated samples"))
C2ST_ROWS = (("real_train_vs_test", "floor: real train vs later real (test) windows"),
             ("reconstruction", "real train vs reconstructions of other train windows"),
             ("generated", "real train vs generated samples"),
             ("reconstruction_no_border", "the same, reconstructions, outer 2 pixels cut"),
             ("generated_no_border", "the same, samples, outer 2 pixels cut"))
BORDER_SETS = (("reconstruction", "test reconstructions"), ("generated", "generated samples"))
TEXTURE_KEYS = ("high_frequency_ratio", "sparsity", "local_variance", "mean_intensity")


def _judge(m: dict) -> str:
    """Judge accuracy per set; with ``judge_native`` also the judge trained at the data's native size, which
    scores the sets resized as ``generate`` writes them."""
    judge, native = m.get("judge") or {}, m.get("judge_native") or {}
    rows = []
    for key, label in SETS:
        a = judge.get(key)
        if a:
            ratio = judge.get(f"ratio_{key}")
            row = [label, Raw(fmt(a.get("overall")) + ci(a)), ratio,
                   (m.get("accuracy") or {}).get(key, {}).get("overall")]
            n = native.get(key)
            rows.append(row + ([Raw(fmt(n.get("overall")) + ci(n)) if n else None, native.get(f"ratio_{key}")]
                               if native else []))
    header = ["image set", "judge accuracy [95% CI]", "× judge's real-test accuracy", "encoder accuracy"]
    if native:
        size = "×".join(str(v) for v in native.get("size", []))
        header += [f"judge at the native size {size} [95% CI]", "× its real-test accuracy"]
    return table(header, rows)


def _c2st(m: dict) -> str:
    res = m.get("c2st") or {}
    rows = []
    for key, label in C2ST_ROWS:
        v = res.get(key)
        if isinstance(v, dict) and "accuracy" in v:
            rows.append([label, Raw(f"{fmt(v['accuracy'])} [{fmt(v['ci95'][0])}, {fmt(v['ci95'][1])}]"),
                         v.get("p_value"), v.get("n_test")])
        elif isinstance(v, dict):
            rows.append([label, v.get("skipped", "not computed"), None, None])
    return table(["two-sample test", "held-out accuracy [95% CI]", "p (vs 0.5)", "held-out windows"], rows)


def _texture(m: dict, plots: dict[str, bytes]) -> str:
    tex = m.get("texture") or {}
    rows = []
    for key, label in SETS:
        t = tex.get(key)
        if not t:
            continue
        ratio = t.get("ratio_to_real", {})
        cells: list[Any] = [label]
        for k in TEXTURE_KEYS:
            cells.append(Raw(fmt(t.get(k), 4) + (f" <span class='sub'>({fmt(ratio[k], 2)}×)</span>"
                                                 if k in ratio else "")))
        cells.append(t.get("histogram_w1"))
        rows.append(cells)
    body = table(["image set", "high-frequency energy", "sparsity", "local variance", "mean intensity",
                  "histogram W1 to real"], rows)
    if "texture" in plots:
        body += f"<img src='{png_b64(plots['texture'])}' alt='texture statistics'>"
    return body


def _in_range(stat: dict) -> Raw:
    return Raw(f"{fmt(stat['mean'])} <span class='sub'>(real {fmt(stat['real_lo'])}…{fmt(stat['real_hi'])})"
               "</span>")


def _borders(m: dict, plots: dict[str, bytes]) -> str:
    res = m.get("borders") or {}
    rows = []
    for key, label in BORDER_SETS:
        v = res.get(key)
        if v:
            rows.append([label, "yes" if v["ok"] else "no", ", ".join(v["outside"]) or "—"]
                        + [_in_range(v["stats"][s]) for s in ("corner_top_left", "corner_top_right")])
    body = table(["image set", "borders within real 5–95%", "outside", "top-left pixel", "top-right pixel"],
                 rows)
    if "difference_maps" in plots:
        body += (f"<img src='{png_b64(plots['difference_maps'])}' alt='per-pixel mean and standard-deviation "
                 "differences to real test windows, and where the real-vs-synthetic classifier looks'>")
    return body


def independent_section(m: dict, plots: dict[str, bytes]) -> str:
    if not m.get("judge"):
        return not_computed("the independent judge is disabled (evaluate.judge_steps = 0)")
    aug = m.get("augmentation_judge") or {}
    aug_html = ""
    if aug.get("arms"):
        arms = " · ".join(f"{k} {fmt(v['mean'])} ± {fmt(v['std'])}" for k, v in aug["arms"].items())
        gain = aug.get("gain") or {}
        aug_html = (f"<p>Augmentation experiment with judge-architecture classifiers: {arms}; paired gain "
                    f"{fmt(gain.get('mean'))} ± {fmt(gain.get('std'))}.</p>")
    return (
        "<p class='note'>A plain CNN trained separately on the real training split (own seed, own "
        "augmentation), sharing nothing with the encoder or the generator. An encoder that learned "
        "blur-proof features can call smooth samples faithful; the judge, the two-sample tests (0.5 = "
        "indistinguishable) and the texture statistics (ratios to real test in brackets) look at the "
        "texture itself.</p>"
        + _judge(m) + aug_html + "<h3>Real vs synthetic two-sample tests (C2ST)</h3>" + _c2st(m)
        + "<h3>Texture</h3>" + _texture(m, plots)
        + "<h3>Borders, corners and where the differences are</h3>" + _borders(m, plots)
    )
