"""Self-contained HTML evaluation report built in Python (no template files, no external URLs).

``render_report(metrics, examples=..., memorisation_pairs=..., plots=..., colormap=...)`` returns one HTML
string: inline CSS, every image a base64 PNG ``data:`` URI, so the file opens offline and can be mailed.
The ``metrics`` dict is the one written to ``metrics.json`` (schema in ``dopplerdiff.evaluate.evaluate``);
any section that is absent is shown as "not computed" and explained in the "What is missing" box.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dopplerdiff.evaluate.report_conditions import conditions_section
from dopplerdiff.evaluate.report_html import (
    PAGE_END,
    Raw,
    ci,
    fmt,
    img_tag,
    not_computed,
    page_head,
    png_b64,
    section,
    table,
)
from dopplerdiff.evaluate.report_independent import independent_section
from dopplerdiff.evaluate.report_strategies import strategy_table

SECTIONS = (
    "headline",
    "examples",
    "identity",
    "distribution",
    "independent",
    "physics",
    "memorisation",
    "augmentation",
    "guidance",
    "missing",
    "settings",
)

@dataclass
class ExampleRow:
    """One identity's example images: real windows above generated samples, both (N, C, H, W) in [0, 1]."""

    identity: str
    real: np.ndarray
    generated: np.ndarray | None


@dataclass
class MemorisationPair:
    """A generated sample beside its nearest training window, both (C, H, W) in [0, 1]."""

    generated: np.ndarray
    train: np.ndarray
    distance: float
    identity: str = ""
    train_file: str = ""


def _per_identity(acc: dict | None, identities: Sequence[str]) -> dict[str, float]:
    """Accept per-identity accuracies as a dict (name or index -> value) or a list in label order."""
    if not acc:
        return {}
    per = acc.get("per_identity")
    if per is None:
        return {}
    if isinstance(per, dict):
        out = {}
        for k, v in per.items():
            name = identities[int(k)] if str(k).isdigit() and int(k) < len(identities) else str(k)
            out[name] = v
        return out
    return {identities[i]: v for i, v in enumerate(per) if i < len(identities)}


def _headline(m: dict) -> str:
    """One row per image set compared with real test; grey rows are the references and floors."""
    acc, dist = m.get("accuracy", {}), m.get("distribution", {})
    sets = [
        ("real test windows (reference)", "real_test", None, "floor"),
        ("floor: real train windows", None, "train_vs_test", "floor"),
        ("floor: test windows through the autoencoder", "reconstruction", "recon_vs_test", "floor"),
        ("generated samples", "generated", "gen_vs_test", ""),
    ]
    rows, classes = [], []
    for label, akey, dkey, cls in sets:
        a, d = acc.get(akey) if akey else None, dist.get(dkey) if dkey else None
        if akey and not a and not d:
            continue
        acc_cell = Raw(fmt(a.get("overall")) + ci(a)) if a else None
        if akey == "generated" and acc.get("ratio") is not None:
            acc_cell = Raw(f"{acc_cell} <span class='sub'>({fmt(acc['ratio'], 2)} × real)</span>")
        d = d or {}
        kid_cell = Raw(fmt(d.get("kid_mean"), 4) + (f" ± {fmt(d.get('kid_std'), 4)}" if d.get("kid_std")
                                                      is not None else "")) if d else None
        rows.append([label, acc_cell, d.get("fd"), kid_cell, d.get("precision"), d.get("recall")])
        classes.append(cls)
    chance = 1.0 / len(m["identities"]) if m.get("identities") else None
    body = table(["image set", "identity accuracy [95% CI]", "Fréchet distance to real test", "KID",
                   "precision", "recall"], rows, classes)
    facts = []
    if chance is not None:
        facts.append(f"chance accuracy {chance:.3f} ({len(m['identities'])} identities)")
    aug = m.get("augmentation")
    if aug and aug.get("arms"):
        arms = " · ".join(f"{html.escape(k)} {fmt(v['mean'])} ± {fmt(v['std'])}"
                          for k, v in aug["arms"].items())
        gain = aug.get("gain")
        g = ""
        if gain:
            cls = "good" if gain["mean"] > 0 else "bad"
            g = (f"; gain from synthetic data <span class='{cls}'>{gain['mean']:+.3f}</span> "
                 f"± {fmt(gain.get('std'))}")
        facts.append(f"augmentation experiment (accuracy on real test): {arms}{g}")
    mem = m.get("memorisation")
    if mem:
        facts.append(f"memorised-looking samples: {fmt(mem.get('flagged'))} of {fmt(mem.get('total'))} "
                     f"({fmt(mem.get('fraction'))}; about {fmt(mem.get('expected_fraction'), 2)} "
                     "expected by chance)")
    if facts:
        body += "<ul>" + "".join(f"<li>{f}</li>" for f in facts) + "</ul>"
    return body + (
        "<p class='note'>Grey rows are references: real test accuracy, and floors that generated samples "
        "can at best reach (other real windows of the same people; test windows after the first stage "
        "alone). Distances use the project's encoder feature space; brackets are bootstrap 95% confidence "
        "intervals.</p>"
    )


def _examples(rows: Sequence[ExampleRow] | None, colormap: str) -> str:
    if not rows:
        return not_computed("no example images")
    out = ["<table class='grid'>"]
    for row in rows:
        for kind, imgs in (("real", row.real), ("generated", row.generated)):
            if imgs is None or len(imgs) == 0:
                cells = "<td class='note'>no generated samples</td>" if kind == "generated" else ""
            else:
                cells = "".join(f"<td>{img_tag(im, colormap, f'{row.identity}, {kind} window {j + 1}')}</td>"
                                for j, im in enumerate(imgs))
            out.append(f"<tr><th>{html.escape(row.identity)} · {kind}</th>{cells}</tr>")
    out.append("</table>")
    return "".join(out)


def _identity(m: dict, plots: dict[str, bytes]) -> str:
    """Per-identity accuracy (with bootstrap CI and n where known) for real test, reconstructions, samples."""
    ids = m.get("identities", [])
    acc = m.get("accuracy", {})
    keys = [k for k in ("real_test", "reconstruction", "generated") if acc.get(k)]
    if not keys:
        return not_computed("no encoder predictions")

    def cell(a: dict, i: int, name: str) -> Any:
        value = _per_identity(a, ids).get(name)
        cis, ns = a.get("per_identity_ci95"), a.get("per_identity_n")
        extra = ""
        if isinstance(cis, list) and i < len(cis) and cis[i]:
            extra += f" <span class='sub'>[{fmt(cis[i][0])}, {fmt(cis[i][1])}]</span>"
        if isinstance(ns, list) and i < len(ns):
            extra += f" <span class='sub'>n={ns[i]}</span>"
        return Raw(fmt(value) + extra) if extra else value

    header = ["Identity"] + [k.replace("_", " ") for k in keys]
    rows = [[name] + [cell(acc[k], i, name) for k in keys] for i, name in enumerate(ids)]
    rows.append(["overall"] + [Raw(fmt(acc[k].get("overall")) + ci(acc[k])) for k in keys])
    body = table(header, rows)
    if "confusion" in plots:
        body += f"<img src='{png_b64(plots['confusion'])}' alt='confusion matrices' style='max-width:100%'>"
    return body


def _distribution(m: dict) -> str:
    dist = m.get("distribution", {})
    if not dist:
        return not_computed("no encoder features")
    names = {
        "gen_vs_test": "generated vs real test",
        "train_vs_test": "real train vs real test (floor)",
        "recon_vs_test": "test reconstructions vs real test (floor)",
    }
    rows, classes = [], []
    for key, d in dist.items():
        rows.append(
            [
                names.get(key, key),
                d.get("fd"),
                d.get("kid_mean"),
                d.get("kid_std"),
                d.get("precision"),
                d.get("recall"),
                d.get("n_a"),
                d.get("n_b"),
            ]
        )
        classes.append("" if key == "gen_vs_test" else "floor")
    return table(
        ["Comparison", "Fréchet distance", "KID", "KID std", "precision", "recall", "n a", "n b"],
        rows,
        classes,
    ) + (
        "<p class='note'>k-NN precision: fraction of samples inside the real test manifold; "
        "recall: fraction of real test windows inside the samples' manifold "
        f"(k = {fmt(m.get('settings', {}).get('knn_k'))}).</p>"
    )


def _physics(m: dict, plots: dict[str, bytes]) -> str:
    """Overall: one row per statistic (real/generated mean ± std, Wasserstein); then W per identity."""
    phys = m.get("physics")
    if not phys:
        return not_computed("no generated samples")
    overall = phys.get("overall", {})
    stats = list(overall)
    body = (
        "<p class='note'>Per-image statistics of real test windows vs generated samples; W = Wasserstein "
        "distance between the two distributions (0 = identical, units of the statistic), W/σ = W divided by "
        "the real standard deviation.</p>"
    )
    rows = []
    for s in stats:
        v = overall[s]
        if isinstance(v, dict):
            rows.append([s, Raw(f"{fmt(v.get('real_mean'))} ± {fmt(v.get('real_std'))}"),
                         Raw(f"{fmt(v.get('gen_mean'))} ± {fmt(v.get('gen_std'))}"),
                         v.get("wasserstein"), v.get("wasserstein_rel")])
        else:
            rows.append([s, None, None, v, None])
    body += table(["statistic", "real test", "generated", "W", "W/σ"], rows)
    per = phys.get("per_identity") or {}
    if per:
        body += "<p class='note'>W per identity:</p>"
        body += table(["identity"] + stats, [[name] + [d.get(s) for s in stats] for name, d in per.items()])
    if "physics" in plots:
        body += f"<img src='{png_b64(plots['physics'])}' alt='physics histograms' style='max-width:100%'>"
    return body


def _memorisation(
    m: dict, pairs: Sequence[MemorisationPair] | None, plots: dict[str, bytes], colormap: str
) -> str:
    mem = m.get("memorisation")
    if not mem:
        return not_computed("no generated samples")
    body = f"<p>Rule: {html.escape(str(mem.get('rule', '')))}</p>"
    body += table(
        ["flagged", "generated", "fraction", "threshold"],
        [[mem.get("flagged"), mem.get("total"), mem.get("fraction"), mem.get("threshold")]],
    )
    if "memorisation" in plots:
        body += f"<img src='{png_b64(plots['memorisation'])}' alt='nearest-neighbour distances'>"
    if pairs:
        cells = []
        for p in pairs:
            cells.append(
                f"<td>{img_tag(p.generated, colormap, f'generated sample of {p.identity}', 96)}<br>"
                f"{img_tag(p.train, colormap, f'nearest training window {p.train_file}'.rstrip(), 96)}<br>"
                f"<span class='sub'>{html.escape(p.identity)} d={p.distance:.3g}</span></td>"
            )
        body += (
            "<p class='note'>Closest generated/training pairs (generated above, nearest training window "
            "below).</p><table class='grid'><tr>" + "".join(cells) + "</tr></table>"
        )
    return body


def _widths(channels: list[int] | None) -> str:
    return f" (CNN widths {channels})" if channels else ""


def _synthetic_gain(m: dict, plots: dict[str, bytes]) -> str:
    aug = m.get("augmentation")
    if not aug or not aug.get("arms"):
        return not_computed(aug.get("skipped", "") if aug else "no generated samples")
    rows = [
        [k, v["mean"], v["std"], ", ".join(f"{x:.3f}" for x in v.get("runs", []))]
        for k, v in aug["arms"].items()
    ]
    body = table(["training data", "real-test accuracy (mean)", "std", "per seed"], rows)
    body += (
        f"<p class='note'>Same classifier{_widths(aug.get('classifier_channels'))} for every arm, "
        f"{fmt(aug.get('steps'))} steps, seeds {aug.get('seeds')}; "
        f"{fmt(aug.get('synthetic_per_identity'))} synthetic windows per identity (the first samples of the "
        "evaluation pool). 'synthetic only' is train-on-synthetic, test-on-real (TSTR).</p>"
    )
    if "augmentation" in plots:
        body += f"<img src='{png_b64(plots['augmentation'])}' alt='augmentation experiment'>"
    return body + strategy_table(m)


def _guidance(m: dict, plots: dict[str, bytes]) -> str:
    sweep = m.get("guidance_sweep")
    if not sweep:
        return not_computed("no diffusion pipeline")
    rows = [[r.get("guidance"), r.get("accuracy"), r.get("fd"), r.get("num")] for r in sweep]
    body = table(["guidance", "identity accuracy", "Fréchet distance", "samples"], rows)
    if "guidance" in plots:
        body += f"<img src='{png_b64(plots['guidance'])}' alt='guidance sweep'>"
    return body


def _missing(m: dict) -> str:
    missing = m.get("missing") or []
    if not missing:
        return "<div class='ok'>Nothing is missing: every section of the evaluation ran.</div>"
    items = "".join(f"<li>{html.escape(s)}</li>" for s in missing)
    return f"<div class='missing'><b>What is missing</b><ul>{items}</ul></div>"


def _settings(m: dict) -> str:
    s = dict(m.get("settings", {}))
    s.update({f"count {k}": v for k, v in (m.get("counts") or {}).items()})
    rows = [[k, v if not isinstance(v, list | dict) else str(v)] for k, v in s.items()]
    return table(["setting", "value"], rows) if rows else not_computed()


def _cost(m: dict) -> str:
    """Wall seconds of each part of the evaluation and its share of the stage (``seconds_by_part``)."""
    parts, total = m.get("seconds_by_part") or {}, m.get("seconds") or 0.0
    rows = [[name, f"{sec:.1f}", f"{100 * sec / total:.0f}%" if total else "—"]
            for name, sec in sorted(parts.items(), key=lambda kv: -kv[1])]
    return table(["part", "seconds", "share of the stage"], rows) if rows else not_computed()


def render_report(
    metrics: dict,
    *,
    examples: Sequence[ExampleRow] | None = None,
    memorisation_pairs: Sequence[MemorisationPair] | None = None,
    plots: dict[str, bytes] | None = None,
    colormap: str = "jet",
    title: str = "dopplerdiff evaluation",
) -> str:
    """Render the whole report as one self-contained HTML string."""
    plots = plots or {}
    run = html.escape(str(metrics.get("run", "")))
    created = html.escape(str(metrics.get("created", "")))
    sections = [
        page_head(title, f"run {run} · {created} · {len(metrics.get('identities', []))} identities"),
        _missing(metrics) if metrics.get("missing") else "",
        section("headline", "Headline", _headline(metrics)),
        section(
            "examples",
            "Real (upper) and generated (lower) windows per identity",
            _examples(examples, colormap),
        ),
        section("identity", "Identity accuracy per identity", _identity(metrics, plots)),
        section("conditions", "Walking conditions", conditions_section(metrics)) if metrics.get("conditions")
        else "",
        section("distribution", "Distribution metrics (encoder feature space)", _distribution(metrics)),
        section("independent", "Independent judge, two-sample tests and texture",
                independent_section(metrics, plots)),
        section("physics", "Physical statistics", _physics(metrics, plots)),
        section("memorisation", "Memorisation", _memorisation(metrics, memorisation_pairs, plots, colormap)),
        section(
            "augmentation",
            "Does synthetic data help? (augmentation experiment)",
            _synthetic_gain(metrics, plots),
        ),
        section("guidance", "Guidance sweep", _guidance(metrics, plots)),
        section("missing", "What is missing", _missing(metrics)),
        section("settings", "Settings", _settings(metrics)),
        section("cost", "Where the evaluation's time went", _cost(metrics)),
        PAGE_END,
    ]
    return "\n".join(p for p in sections if p)
