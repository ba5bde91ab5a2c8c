"""The web app's logic as plain functions: numbers, paths and arrays in; arrays, dicts and files out.

Each tab of the page calls one function here. Bad input is one ``DopplerDiffError`` whose message the page
shows; nothing here imports gradio, so the functions are tested without it.
"""

from __future__ import annotations

import dataclasses
import html
import itertools
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from dopplerdiff.config import Config, config_for
from dopplerdiff.config.base import check_seed
from dopplerdiff.data.contact import grid_image
from dopplerdiff.data.images import read_file, resize, to_unit
from dopplerdiff.data.run_data import read_run_data
from dopplerdiff.edit.io import COLORMAP_RESIDUAL_WARN, output_names, read_inputs, write_outputs
from dopplerdiff.edit.ops import inpaint, span_mask, transfer
from dopplerdiff.embed.ops import identify_files, search_files
from dopplerdiff.errors import DataError, DopplerDiffError
from dopplerdiff.generate import GenerationPlan, check_format, write_plan
from dopplerdiff.pipelines.auto_pipeline import load_run_pipeline
from dopplerdiff.pipelines.pipeline_vq_diffusion import refuse_edits
from dopplerdiff.schedulers import SCHEDULER_NAMES
from dopplerdiff.synthetic.strategy import DEFAULT_STRENGTH, Strategy, with_strategy
from dopplerdiff.utils.io import read_json_if_exists
from dopplerdiff.utils.rundir import RunDir

STRATEGIES = ("prior", "real-seeded")
MAX_SAMPLES = 16  # per press of Generate: a page, not a dataset (use `dopplerdiff generate` for more)
NEIGHBOURS = 3


@dataclasses.dataclass
class AppContext:
    """A run opened for the app: its pipeline, configs, data settings, and an optional index."""

    run: Path
    pipe: Any
    cfg: Config
    data_cfg: Any
    meta: dict[str, Any]
    index: Path | None
    workdir: Path
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    _counter: Any = dataclasses.field(default_factory=itertools.count)

    def new_dir(self, kind: str) -> Path:
        """A fresh folder under the work directory for one request's outputs."""
        return self.workdir / f"{kind}-{next(self._counter):04d}"


def open_app(run: Path, index: Path | None = None, device: str | None = None,
             workdir: Path | None = None) -> AppContext:
    """Load RUN/pipeline and settings; check INDEX exists. Errors name --run / --index."""
    run = Path(run)
    if not run.is_dir():
        raise DopplerDiffError(f"--run '{run}' is not a directory")
    if index is not None and not (Path(index) / "meta.json").is_file():
        raise DopplerDiffError(f"--index '{index}' is not an embedding index (no meta.json); "
                               "make one with `dopplerdiff embed`")
    cfg = config_for(run, None, [])
    pipe = load_run_pipeline(run, device)
    pipe.set_progress_bar_config(disable=True)
    meta = read_run_data(run).get("meta", {}) if RunDir(run).data_record.is_file() else {}
    data_cfg = dataclasses.replace(cfg.data, colormap=pipe.config.colormap)
    work = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="dopplerdiff-app-"))
    return AppContext(run, pipe, cfg, data_cfg, meta, None if index is None else Path(index), work)


def settings(ctx: AppContext) -> dict[str, Any]:
    """Choices and defaults for the page: identities (incl. enrolled ones), samplers, steps, guidance."""
    d = ctx.cfg.diffusion
    now = ctx.pipe.scheduler_name
    samplers = list(SCHEDULER_NAMES) if now in SCHEDULER_NAMES else [now]  # vq-diffusion: its own only
    return {"identities": list(ctx.pipe.identities), "samplers": samplers,
            "sampler": d.scheduler if d.scheduler in samplers else samplers[0],
            "steps": int(d.num_inference_steps), "guidance": float(d.guidance_scale),
            "strength": DEFAULT_STRENGTH, "colormap": ctx.pipe.config.colormap,
            "has_index": ctx.index is not None}


def _grid(rows: list[np.ndarray], labels: list[str], colormap: str) -> np.ndarray:
    """(H, W, 3) uint8 picture of rows of (N, C, H, W) images in [0, 1]."""
    return np.asarray(grid_image(rows, colormap, labels, min_cell=96))


def _zip(folder: Path) -> Path:
    """``folder.zip`` next to ``folder`` (the download of one request)."""
    return Path(shutil.make_archive(str(folder), "zip", root_dir=folder))


def _check_count(num: int) -> int:
    if not 1 <= int(num) <= MAX_SAMPLES:
        raise DopplerDiffError(f"number of samples must be between 1 and {MAX_SAMPLES}, got {num}")
    return int(num)


def _seed(seed: Any) -> int:
    """The page's seed box as an int (an empty box or 1.5 is one message, not a crash)."""
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)
    return check_seed(seed, "seed")


def _identity(ctx: AppContext, identity: str | None) -> str:
    if not identity or identity not in ctx.pipe.identities:
        raise DopplerDiffError(f"choose an identity of the run ({', '.join(ctx.pipe.identities)}); "
                               f"got '{identity or ''}'")
    return identity


def generate(ctx: AppContext, identity: str, num: int, *, guidance: float, steps: int, sampler: str,
             seed: int, strategy: str = "prior", strength: float = DEFAULT_STRENGTH,
             fmt: str = "png") -> dict[str, Any]:
    """Samples of one identity written in the data's layout -> {grid, zip, files, manifest}."""
    identity, num, fmt = _identity(ctx, identity), _check_count(num), check_format(fmt)
    if strategy not in STRATEGIES:
        raise DopplerDiffError(f"strategy must be one of {', '.join(STRATEGIES)}, got '{strategy}'")
    how = Strategy(from_real="split", strength=float(strength)) if strategy == "real-seeded" else Strategy()
    plan = GenerationPlan(identities=(identity,), count=num, steps=int(steps), guidance=float(guidance),
                          scheduler=sampler, seed=_seed(seed))
    out = ctx.new_dir("generate")
    with ctx.lock:
        plan = with_strategy(plan, how, ctx.run, ctx.pipe, ctx.data_cfg)
        write_plan(ctx.pipe, plan, out / "samples", fmt=fmt, colormap=ctx.meta.get("colormap"),
                   native_size=ctx.meta.get("native_size"), progress=False,
                   extra_manifest={"run": str(ctx.run), "app": True}, config=ctx.cfg)
    manifest = read_json_if_exists(out / "samples" / "manifest.json") or {}
    files = [out / "samples" / f for f in manifest.get("files", {}).get(identity, [])]
    images = np.stack([read_file(f, ctx.data_cfg).array for f in files])
    return {"grid": _grid([images], [identity], ctx.pipe.config.colormap), "zip": _zip(out / "samples"),
            "files": [str(f) for f in files], "manifest": manifest}


def read_uploads(ctx: AppContext, files: list[str] | None) -> tuple[list[Path], np.ndarray, list[str]]:
    """Uploaded windows -> (paths, (N, C, size, size) in [-1, 1], notes for the page).

    Refused: an empty upload, a file that is not a spectrogram image/array, colours the run's colormap
    cannot invert. Another size is resized to the model's and said so."""
    paths = [Path(f) for f in (files or []) if f]
    if not paths:
        raise DopplerDiffError("no file uploaded: upload one or more spectrogram windows "
                               "(png, jpg, npy, mat)")
    images, notes = read_inputs(paths, ctx.data_cfg, warn=False)
    bad = [n for n in notes if (n["colormap_residual"] or 0) > COLORMAP_RESIDUAL_WARN]
    if bad:
        raise DataError(
            f"'{Path(bad[0]['file']).name}': its colours are not the run's '{ctx.data_cfg.colormap}' "
            f"colormap (mean RGB distance {bad[0]['colormap_residual']:.0f} > {COLORMAP_RESIDUAL_WARN:.0f}); "
            "upload a window made with that colormap, or an .npy array")
    size = ctx.data_cfg.size
    text = [f"{Path(n['file']).name}: {n['native_size'][0]}x{n['native_size'][1]} resized to {size}x{size}"
            for n in notes if n["resized"]]
    return paths, images, text


def _edited(ctx: AppContext, kind: str, paths: list[Path], src: np.ndarray, out01: np.ndarray,
            notes: list[str], **manifest: Any) -> dict[str, Any]:
    """Write an edit's outputs (native size, run colormap) and show inputs above outputs."""
    p = ctx.pipe
    out = ctx.new_dir(kind)
    write_outputs(out / "edited", out01, output_names(paths, f"_{kind}"), colormap=p.config.colormap,
                  size=p.config.native_size, fmt="png", run=str(ctx.run), kind=f"edit-{kind}",
                  inputs=[q.name for q in paths], **manifest)
    src01 = to_unit(src)
    if src01.shape[-2:] != out01.shape[-2:]:  # an upsampling decoder samples larger than its input
        src01 = np.stack([resize(x, out01.shape[-2:]) for x in src01])
    grid = _grid([src01, out01], ["input", kind], p.config.colormap)
    return {"grid": grid, "zip": _zip(out / "edited"), "notes": notes}


def edit_transfer(ctx: AppContext, files: list[str] | None, identity: str, *, strength: float,
                  guidance: float, steps: int, seed: int = 0) -> dict[str, Any]:
    """Re-render uploaded windows as ``identity`` at ``strength`` (img2img)."""
    refuse_edits(ctx.pipe, "editing in the app")
    identity = _identity(ctx, identity)
    paths, src, notes = read_uploads(ctx, files)
    with ctx.lock:
        out = transfer(ctx.pipe, src, identity, strength=float(strength), guidance=float(guidance),
                       steps=int(steps), seed=_seed(seed))
    return _edited(ctx, "transfer", paths, src, out, notes, identity=identity, strength=float(strength),
                   steps=int(steps), guidance=float(guidance), seed=_seed(seed))


def edit_inpaint(ctx: AppContext, files: list[str] | None, identity: str | None, *, start: float, end: float,
                 guidance: float, steps: int, seed: int = 0) -> dict[str, Any]:
    """Regenerate the time span [start, end] (fractions of the window) of uploaded windows."""
    refuse_edits(ctx.pipe, "editing in the app")
    identity = _identity(ctx, identity) if identity else None
    paths, src, notes = read_uploads(ctx, files)
    mask = span_mask(src.shape[-2:], (float(start), float(end)), None)
    with ctx.lock:
        out = inpaint(ctx.pipe, src, mask, identity, guidance=float(guidance), steps=int(steps),
                      seed=_seed(seed))
    return _edited(ctx, "inpaint", paths, src, out, notes, identity=identity, mask_time=[start, end],
                   steps=int(steps), guidance=float(guidance), seed=_seed(seed))


def _index_image(data_root: str | None, file: str, cfg: Any) -> np.ndarray | None:
    """An indexed window's picture in [0, 1], or None when its file is no longer where it was."""
    path = Path(file) if Path(file).is_absolute() or not data_root else Path(data_root) / file
    try:
        return read_file(path, cfg).array
    except Exception:  # noqa: BLE001 - a moved or unreadable gallery file only hides its picture
        return None


def identify_uploads(ctx: AppContext, files: list[str] | None, *, fuse: bool = False,
                     threshold: str = "auto") -> dict[str, Any]:
    """Who walks in the uploaded windows (or 'unknown') -> {rows, grid, threshold, notes}."""
    if ctx.index is None:
        raise DopplerDiffError("no index: start the app with --index INDEX (made by `dopplerdiff embed`)")
    paths, src, notes = read_uploads(ctx, files)
    icfg = config_for(ctx.index, None, [])
    out = identify_files(ctx.index, paths, icfg, threshold=threshold, fuse=fuse)
    near = search_files(ctx.index, paths, icfg, k=NEIGHBOURS)
    rows = [{"windows": ", ".join(Path(f).name for f in r["files"]), "decision": r["identity"],
             "score": round(r["score"], 4), "best": r["best"],
             "ranking": "; ".join(f"{x['identity']} {x['score']:.3f}" for x in r["ranking"])}
            for r in out["results"]]
    root = (read_json_if_exists(ctx.index / "manifest.json") or {}).get("data_root")
    pics, labels = [], []
    for q, res in zip(to_unit(src), near, strict=True):
        found = [(n, _index_image(root, n["file"], icfg.data)) for n in res["neighbours"]]
        shown = [q] + [resize(a, q.shape[-2:]) for _, a in found if a is not None]
        pics.append(np.stack(shown))
        labels.append(f"{Path(res['query']).name} -> " + ", ".join(
            f"{n['identity']} {n['score']:.2f}" for n, _ in found))
    grid = _grid(pics, labels, ctx.pipe.config.colormap)
    return {"rows": rows, "threshold": out["threshold"], "grid": grid, "notes": notes, "result": out}


def report_html(ctx: AppContext) -> str:
    """RUN/eval/report.html in an iframe (it is self-contained), else a message saying how to make it."""
    path = RunDir(ctx.run).eval / "report.html"
    if not path.is_file():
        return (f"<p>No report yet: '{html.escape(str(path))}' is missing. Make it with "
                f"<code>dopplerdiff evaluate --run {html.escape(str(ctx.run))}</code>.</p>")
    doc = html.escape(path.read_text(encoding="utf-8"), quote=True)
    style = "width:100%;height:80vh;border:0"
    return f'<iframe title="evaluation report" srcdoc="{doc}" style="{style}"></iframe>'
