"""The evaluation report: valid, self-contained HTML with every section, readable with partial metrics."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from dopplerdiff.evaluate import plots
from dopplerdiff.evaluate.report import SECTIONS, ExampleRow, MemorisationPair, render_report
from dopplerdiff.evaluate.report_html import image_b64

IDS = ["ID_1", "ID_2", "ID_3"]
VOID = {"meta", "img", "br", "hr", "input", "link", "col"}


class _Checker(HTMLParser):
    """Collects tags/attributes and checks that non-void tags are balanced."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            self.attrs.append((tag, k, v or ""))
            if k == "id":
                self.ids.add(v)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unbalanced </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()


def _acc(v: float) -> dict:
    return {
        "overall": v,
        "ci95": [v - 0.1, v + 0.1],
        "per_identity": {n: v for n in IDS},
        "confusion": np.eye(3).tolist(),
    }


def _full_metrics() -> dict:
    dist = {
        "fd": 1.5,
        "kid_mean": 0.01,
        "kid_std": 0.002,
        "precision": 0.7,
        "recall": 0.6,
        "n_a": 12,
        "n_b": 9,
    }
    return {
        "run": "/tmp/run",
        "created": "now",
        "identities": IDS,
        "settings": {"num_per_identity": 4, "guidance": 2.0, "knn_k": 3},
        "counts": {"train": 20, "test": 9},
        "missing": [],
        "accuracy": {
            "real_test": _acc(0.8),
            "reconstruction": _acc(0.7),
            "generated": _acc(0.4),
            "ratio": 0.5,
        },
        "distribution": {"gen_vs_test": dist, "train_vs_test": dist, "recon_vs_test": dist},
        "physics": {
            "overall": {
                "torso_doppler": {"wasserstein": 0.1, "real_mean": 0.25, "gen_mean": 0.375, "real_std": 0.5},
                "cadence": 0.2,
            },
            "per_identity": {n: {"torso_doppler": 0.1, "cadence_hz": 0.3} for n in IDS},
        },
        "memorisation": {
            "rule": "closer than the 5th percentile",
            "flagged": 1,
            "total": 12,
            "fraction": 1 / 12,
            "threshold": 0.5,
        },
        "augmentation": {
            "arms": {
                "real": {"mean": 0.8, "std": 0.01, "runs": [0.79, 0.81]},
                "real+synthetic": {"mean": 0.82, "std": 0.02, "runs": [0.8, 0.84]},
                "synthetic": {"mean": 0.4, "std": 0.05, "runs": [0.35, 0.45]},
            },
            "gain": {"mean": 0.02, "std": 0.01, "runs": [0.01, 0.03]},
            "seeds": [0, 1],
            "steps": 4,
            "synthetic_per_identity": 4,
        },
        "guidance_sweep": [
            {"guidance": 0.0, "accuracy": 0.3, "fd": 3.0, "num": 6},
            {"guidance": 2.0, "accuracy": 0.5, "fd": 2.0, "num": 6},
        ],
    }


def _plots(m: dict) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {
        "confusion": plots.confusion_plot(
            {"real test": np.eye(3), "generated": rng.integers(0, 5, (3, 3))}, IDS
        ),
        "guidance": plots.guidance_sweep_plot(m["guidance_sweep"], real_accuracy=0.8),
        "augmentation": plots.synthetic_gain_plot(m["augmentation"]["arms"]),
        "physics": plots.physics_plot({"a": rng.normal(size=20)}, {"a": rng.normal(size=20)}),
        "memorisation": plots.distance_hist_plot(rng.random(12), rng.random(9), 0.2),
    }


def _check_html(text: str) -> _Checker:
    assert text.startswith("<!DOCTYPE html>")
    parser = _Checker()
    parser.feed(text)
    parser.close()
    assert not parser.errors, parser.errors[:3]
    assert parser.stack == [], f"unclosed tags: {parser.stack}"
    # Self-contained: every src/href is an embedded data URI or a same-page anchor; no external URL anywhere.
    for tag, key, val in parser.attrs:
        if key in ("src", "href"):
            assert val.startswith("data:image/png;base64,") or val.startswith("#"), (tag, key, val[:40])
    assert not re.search(r"https?://", text)
    assert "<script" not in text and "<link" not in text
    return parser


def test_full_report_has_every_section_and_embedded_images():
    m = _full_metrics()
    rng = np.random.default_rng(1)
    examples = [ExampleRow(n, rng.random((3, 1, 16, 16)), rng.random((3, 1, 16, 16))) for n in IDS]
    pairs = [MemorisationPair(rng.random((1, 16, 16)), rng.random((1, 16, 16)), 0.12, "ID_1", "ID_1/x.png")]
    text = render_report(m, examples=examples, memorisation_pairs=pairs, plots=_plots(m), colormap="jet")
    parser = _check_html(text)
    assert set(SECTIONS) <= parser.ids
    imgs = [v for t, k, v in parser.attrs if t == "img" and k == "src"]
    # 3 identities x (3 real + 3 generated) + 2 memorisation images + 5 plots
    assert len(imgs) == 18 + 2 + 5
    for src in imgs[:2]:
        png = base64.b64decode(src.split(",", 1)[1])
        assert Image.open(io.BytesIO(png)).format == "PNG"
    assert "0.800" in text and "0.400" in text  # real vs generated accuracy both shown
    assert "floor" in text and "Nothing is missing" in text
    assert "+0.020" in text  # the augmentation gain, signed
    assert "0.250 ± 0.500" in text and "0.375" in text  # physics: real and generated means side by side


def test_partial_report_says_what_is_missing():
    m = {
        "run": "r",
        "identities": IDS,
        "accuracy": {"real_test": _acc(0.9)},
        "distribution": {"train_vs_test": {"fd": 0.5}},
        "missing": ["RUN/pipeline not found: no generated samples"],
    }
    examples = [ExampleRow(n, np.zeros((2, 1, 8, 8)), None) for n in IDS]
    text = render_report(m, examples=examples)
    parser = _check_html(text)
    assert set(SECTIONS) <= parser.ids
    assert "What is missing" in text and "RUN/pipeline not found" in text
    assert "Nothing is missing" not in text
    assert text.count("Not computed") >= 4  # physics, memorisation, augmentation, guidance


def test_html_escapes_untrusted_text():
    m = {"run": "<script>alert(1)</script>", "identities": ["<b>x</b>"], "missing": ["a <i>b</i>"]}
    text = render_report(m)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "<i>b</i>" not in text


@pytest.mark.parametrize("shape", [(16, 16), (1, 16, 16), (3, 16, 16)])
def test_image_b64_colormaps_one_channel_and_keeps_rgb(shape):
    img = np.linspace(0, 1, int(np.prod(shape))).reshape(shape)
    png = base64.b64decode(image_b64(img, "jet").split(",", 1)[1])
    arr = np.asarray(Image.open(io.BytesIO(png)))
    assert arr.shape == (16, 16, 3)
    if len(shape) == 2 or shape[0] == 1:
        # jet: low values blue, high values red
        assert arr[0, 0, 2] > arr[0, 0, 0] and arr[-1, -1, 0] > arr[-1, -1, 2]


def test_every_image_has_alt_text_and_the_page_fits_a_phone():
    m = _full_metrics()
    rng = np.random.default_rng(2)
    examples = [ExampleRow(n, rng.random((2, 1, 8, 8)), rng.random((2, 1, 8, 8))) for n in IDS]
    pairs = [MemorisationPair(rng.random((1, 8, 8)), rng.random((1, 8, 8)), 0.1, "ID_2", "ID_2/w.png")]
    text = render_report(m, examples=examples, memorisation_pairs=pairs, plots=_plots(m), colormap="jet")
    _check_html(text)

    class Images(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.found: list[dict[str, str]] = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.found.append({k: v or "" for k, v in attrs})

    parser = Images()
    parser.feed(text)
    imgs = parser.found
    assert len(imgs) == 3 * 4 + 2 + 5
    assert all(a.get("alt", "").strip() for a in imgs), [a.get("alt") for a in imgs]
    alts = {a["alt"] for a in imgs}
    assert {"ID_1, real window 1", "ID_3, generated window 2", "nearest training window ID_2/w.png"} <= alts
    # phone width: the viewport follows the device, wide tables scroll inside themselves, images shrink
    assert "<meta name='viewport' content='width=device-width, initial-scale=1'>" in text
    assert re.search(r"table\{[^}]*overflow-x:auto", text) and re.search(r"img\{max-width:100%", text)


def test_conditions_section_only_for_runs_with_conditions():
    m = _full_metrics()
    assert 'id="conditions"' not in render_report(m)
    row = {"condition": "backpack", "people": 3, "real_test": 30, "samples": 12, "fd_gen_vs_test": 4.25,
           "identity_accuracy": {"real_test": 0.9, "generated": 0.625},
           "condition_accuracy": {"real_test": 0.95, "generated": 0.4375}}
    text = render_report({**m, "conditions": [row, {**row, "condition": "normal"}]})
    parser = _check_html(text)
    assert "conditions" in parser.ids and "backpack" in text and "normal" in text
    assert "0.438" in text and "0.625" in text and "4.250" in text


def test_native_size_judge_columns_only_when_computed():
    m = {**_full_metrics(), "judge": {"real_test": _acc(0.85), "reconstruction": _acc(0.7),
                                      "generated": _acc(0.6)}}
    assert "native size" not in render_report(m)
    native = {"size": [256, 256], "real_test": _acc(0.9), "reconstruction": _acc(0.45),
              "ratio_reconstruction": 0.5, "generated": _acc(0.3), "ratio_generated": 1 / 3}
    text = render_report({**m, "judge_native": native})
    _check_html(text)
    assert "judge at the native size 256×256" in text and "0.450" in text and "0.333" in text


def test_cost_section_lists_each_part_by_its_share():
    m = {**_full_metrics(), "seconds": 200.0,
         "seconds_by_part": {"sample pool": 50.0, "augmentation experiment": 120.0, "reconstructions": 2.0}}
    text = render_report(m)
    assert "cost" in _check_html(text).ids
    body = text[text.index('id="cost"'):]
    assert body.index("augmentation experiment") < body.index("sample pool") < body.index("reconstructions")
    assert "60%" in body and "25%" in body and "120.0" in body
    plain = render_report(_full_metrics())
    assert "Not computed" in plain[plain.index('id="cost"'):]
