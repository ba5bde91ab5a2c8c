"""The web app: its handlers on a tiny run and index, the missing-extra error, and (with gradio) the page
driven through gradio_client."""

from __future__ import annotations

import json
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import build_tiny_pipeline, run_cli

from dopplerdiff.app import handlers as h
from dopplerdiff.data.images import write_image
from dopplerdiff.errors import DopplerDiffError

NAMES = ["ID_1", "ID_2", "ID_3", "alice"]  # alice: a person added with enroll-generator
N_WIN = 12


def _pattern(person: int, window: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A toy walk: a Doppler band whose centre and modulation period depend on the person."""
    t, rows = np.arange(size), np.arange(size)[:, None]
    centre = 6 + 5 * person + 2 * np.sin(2 * np.pi * (t + window) / (4 + 2 * person))
    return np.clip(np.exp(-((rows - centre) ** 2) / 4.0) + 0.05 * rng.standard_normal((size, size)), 0, 1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, smoke_config) -> dict[str, Path]:
    """Data of three people (32x32 jet PNGs), a run with a tiny 4-identity pipeline whose data.json lists
    the data's training windows, and an index made with an untrained smoke-sized encoder."""
    import torch

    from dopplerdiff.embed.ops import create_index
    from dopplerdiff.models.encoder import SpectrogramEncoder

    root = tmp_path_factory.mktemp("app")
    train = []
    for p in range(3):
        rng = np.random.default_rng(p)
        for i in range(N_WIN):
            rel = f"ID_{p + 1}/ID{p + 1}_case1_1_Doppler{i + 1}.png"
            write_image(root / "data" / rel, _pattern(p, i, rng), "jet")
            train += [rel] if i < 4 else []
    run = root / "run"
    build_tiny_pipeline(smoke_config, identities=4, names=NAMES).save_pretrained(run / "pipeline")
    smoke_config.save(run / "config.yaml")
    data = {"data_root": str(root / "data"), "identities": NAMES[:3], "split": {"train": train},
            "meta": {"colormap": "jet", "native_size": None}}
    (run / "data.json").write_text(json.dumps(data))
    torch.manual_seed(0)
    enc = SpectrogramEncoder(kind="cnn", in_channels=1, image_size=16, num_classes=3, embed_dim=16,
                             cnn_channels=[8, 16], doppler_bins=8, identities=NAMES[:3], data_size=16,
                             channels=1, colormap="jet")
    enc.save_pretrained(root / "encoder")
    create_index(root / "encoder", root / "data", root / "index", smoke_config)
    return {"root": root, "run": run, "index": root / "index", "data": root / "data"}


@pytest.fixture(scope="module")
def ctx(setup):
    return h.open_app(setup["run"], setup["index"], device="cpu", workdir=setup["root"] / "work")


def _zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as z:
        return sorted(n for n in z.namelist() if not n.endswith("/"))


def test_settings_list_the_pipelines_identities_incl_enrolled(ctx):
    s = h.settings(ctx)
    assert s["identities"] == NAMES  # from the pipeline, not data.json (which lacks 'alice')
    assert s["sampler"] in s["samplers"] and s["has_index"]


def test_generate_writes_the_data_layout_reproducibly(ctx):
    args = dict(guidance=2.0, steps=2, sampler="ddim", seed=5, fmt="npy")
    a, b = h.generate(ctx, "alice", 2, **args), h.generate(ctx, "alice", 2, **args)
    assert _zip_names(a["zip"]) == ["alice/alice_gen_0.npy", "alice/alice_gen_1.npy", "config.yaml",
                                    "manifest.json"]
    assert a["grid"].ndim == 3 and a["grid"].shape[-1] == 3 and a["grid"].dtype == np.uint8
    for fa, fb in zip(a["files"], b["files"], strict=True):
        assert np.array_equal(np.load(fa), np.load(fb))
    assert a["manifest"]["seed"] == 5 and a["manifest"]["strategy"]["from_real"] is None


def test_generate_real_seeded_uses_training_windows(ctx):
    out = h.generate(ctx, "ID_2", 1, guidance=1.0, steps=4, sampler="ddim", seed=0, strategy="real-seeded",
                     strength=0.5)
    assert out["manifest"]["strategy"]["strength"] == 0.5
    assert out["manifest"]["sources"]["ID_2"][0].startswith("ID_2/")


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"identity": "nobody"}, "choose an identity"),
    ({"num": 0}, "number of samples"),
    ({"strategy": "magic"}, "strategy must be"),
    ({"fmt": "gif"}, "--format 'gif'"),
    ({"seed": None}, "seed must be an integer"),
    ({"seed": 1.5}, "seed must be an integer"),
])
def test_generate_refuses_bad_settings(ctx, kwargs, needle):
    args = {"identity": "ID_1", "num": 1, "guidance": 1.0, "steps": 2, "sampler": "ddim", "seed": 0,
            **kwargs}
    with pytest.raises(DopplerDiffError, match=needle):
        h.generate(ctx, args.pop("identity"), args.pop("num"), **args)


def _upload(setup, kind: str, tmp_path: Path) -> list[str]:
    """Upload files of one kind: good windows, or a hostile one."""
    good = sorted((setup["data"] / "ID_2").glob("*.png"))[:2]
    if kind == "good":
        return [str(p) for p in good]
    if kind == "empty":
        return []
    bad = tmp_path / ("notes.png" if kind == "text" else "viridis.png")
    if kind == "text":
        bad.write_text("not an image")
    else:
        write_image(bad, np.linspace(0, 1, 256).reshape(16, 16), "viridis")
    return [str(bad)]


@pytest.mark.parametrize(("kind", "needle"), [
    ("empty", "no file uploaded"), ("text", "notes.png"), ("viridis", "colormap"),
])
def test_bad_uploads_are_one_message(ctx, setup, tmp_path, kind, needle):
    for call in (lambda f: h.edit_transfer(ctx, f, "ID_1", strength=0.5, guidance=1.0, steps=2),
                 lambda f: h.identify_uploads(ctx, f)):
        with pytest.raises(DopplerDiffError, match=needle):
            call(_upload(setup, kind, tmp_path))


def test_transfer_and_inpaint(ctx, setup, tmp_path):
    files = _upload(setup, "good", tmp_path)
    out = h.edit_transfer(ctx, files, "ID_3", strength=0.5, guidance=1.0, steps=2)
    assert len(_zip_names(out["zip"])) == 3 and out["notes"][0].endswith("32x32 resized to 16x16")
    out = h.edit_inpaint(ctx, files, None, start=0.25, end=0.5, guidance=1.0, steps=2)
    names = _zip_names(out["zip"])
    assert names[0].endswith("_inpaint.png") and "manifest.json" in names
    with pytest.raises(DopplerDiffError, match="--mask-time"):
        h.edit_inpaint(ctx, files, None, start=0.6, end=0.5, guidance=1.0, steps=2)


def test_identify_decides_and_shows_neighbours(ctx, setup, tmp_path):
    files = _upload(setup, "good", tmp_path)
    out = h.identify_uploads(ctx, files)
    assert len(out["rows"]) == 2 and all(r["decision"] in NAMES + ["unknown"] for r in out["rows"])
    assert out["threshold"] is not None and out["grid"].shape[-1] == 3
    fused = h.identify_uploads(ctx, files, fuse=True)
    assert len(fused["rows"]) == 1 and fused["rows"][0]["windows"].count(",") == 1
    no_index = h.AppContext(**{**ctx.__dict__, "index": None, "lock": ctx.lock})
    with pytest.raises(DopplerDiffError, match="--index"):
        h.identify_uploads(no_index, files)


def test_report_tab(ctx):
    assert "No report yet" in h.report_html(ctx)
    (ctx.run / "eval").mkdir(exist_ok=True)
    (ctx.run / "eval" / "report.html").write_text('<h1>Report "x"</h1>')
    try:
        assert "srcdoc=\"&lt;h1&gt;Report &quot;x&quot;" in h.report_html(ctx)
    finally:
        (ctx.run / "eval" / "report.html").unlink()


def test_cli_without_gradio_is_one_error(setup, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gradio" else real(name, *a))
    code, _, err = run_cli(monkeypatch, capsys, "app", "--run", setup["run"])
    assert code == 2 and err.count("error:") == 1 and "pip install -e '.[app]'" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_page_through_gradio_client(ctx, setup, tmp_path):
    pytest.importorskip("gradio", reason="the app extra is not installed: pip install -e '.[app]'")
    client_mod = pytest.importorskip("gradio_client", reason="gradio_client is not installed")
    from dopplerdiff.app import ui

    port = _free_port()
    page = ui.launch(ctx, port=port, block=False)
    try:
        client = client_mod.Client(f"http://127.0.0.1:{port}/", verbose=False)
        grid, download = client.predict("ID_1", 2, 1.0, 2, "ddim", 0, "prior", 0.6, "png",
                                        api_name="/generate")
        assert Path(grid).is_file() and _zip_names(download) == [
            "ID_1/ID1_gen_0.png", "ID_1/ID1_gen_1.png", "config.yaml", "manifest.json"]
        bad = [client_mod.handle_file(f) for f in _upload(setup, "text", tmp_path)]
        with pytest.raises(Exception, match="unreadable input") as info:
            client.predict(bad, "ID_1", "transfer", 0.5, 0.4, 0.6, 1.0, 2, 0, api_name="/edit")
        assert "Traceback" not in str(info.value)
    finally:
        page.close()


@pytest.mark.parametrize(("exc", "shown"), [
    (DopplerDiffError("--index 'x' is not an embedding index"), "--index 'x' is not an embedding index"),
    (ValueError("boom"), "unexpected error (ValueError: boom); see the server log"),
])
def test_page_shows_errors_as_one_message(exc, shown):
    gr = pytest.importorskip("gradio", reason="the app extra is not installed: pip install -e '.[app]'")
    from dopplerdiff.app import ui

    def fail():
        raise exc

    with pytest.raises(gr.Error) as info:
        ui._in_page(gr, fail)()
    assert info.value.message == shown and info.value.__cause__ is None
