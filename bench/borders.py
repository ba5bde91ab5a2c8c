"""Corner and border giveaways: real test windows vs first-stage reconstructions (and samples) of runs.

    python bench/borders.py RUN [RUN ...] [--name NAME] [--samples N]

For each run: the test split's real windows at the run's size, their reconstructions through
RUN/autoencoder and, with ``--samples N`` and a RUN/pipeline, N generated windows per identity; each
corner pixel and edge line compared with the real windows' 5-95% range (evaluate/borders.py).
Prints a table and writes bench/results/borders_NAME.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from dopplerdiff.config import config_for
from dopplerdiff.data.contact import save_grid
from dopplerdiff.data.images import to_unit
from dopplerdiff.data.run_data import prepare_run_data
from dopplerdiff.evaluate.borders import compare_borders
from dopplerdiff.evaluate.loading import load_run_autoencoder, run_data_config
from dopplerdiff.evaluate.texture import compare_texture
from dopplerdiff.evaluate.windows import reconstruct

RESULTS = Path(__file__).resolve().parent / "results"
SHOWN = ("corner_top_left", "corner_top_right", "corner_bottom_left", "corner_bottom_right",
         "edge_top", "edge_right")


def generated(run: Path, n: int) -> np.ndarray | None:
    """``n`` windows per identity from RUN/pipeline at the profile's sampler settings (None: no pipeline)."""
    from dopplerdiff.pipelines.auto_pipeline import load_pipeline

    if n < 1 or not (run / "pipeline").is_dir():
        return None
    pipe = load_pipeline(run / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    ids = [i for i in range(len(pipe.identities)) for _ in range(n)]
    out = [pipe(identities=ids[i : i + 64], generator=torch.Generator().manual_seed(i),
                num_inference_steps=10, guidance_scale=4.0, output_type="np").images
           for i in range(0, len(ids), 64)]
    return np.concatenate(out).transpose(0, 3, 1, 2) * 2.0 - 1.0


def trained_with(run: Path, vae) -> dict:
    """The first stage's padding (from the saved model) and spectral loss (from the run's config.yaml as
    written: runs made before the tiled loss existed used one whole-image FFT, i.e. patch 0)."""
    loss = (yaml.safe_load((run / "config.yaml").read_text()).get("autoencoder") or {}).get("loss") or {}
    return {"padding_mode": vae.config.get("padding_mode", "zeros"), "spectral": loss.get("spectral"),
            "spectral_patch": loss.get("spectral_patch", 0)}


def last_val(run: Path) -> dict:
    """PSNR/SSIM of the first stage's last validation (RUN/train/autoencoder/log.jsonl)."""
    log = run / "train" / "autoencoder" / "log.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    vals = [json.loads(line) for line in lines if '"val"' in line]
    return {k: vals[-1].get(k) for k in ("step", "psnr", "ssim")} if vals else {}


def picture(path: Path, real: np.ndarray, y: np.ndarray, rec: np.ndarray, gen: np.ndarray | None,
            n: int, names: list[str], per_row: int = 4) -> None:
    """Rows of real test windows, their reconstructions and samples for the first 2 identities, cells
    enlarged (nearest) to 256 px, the measured data's own size, so edges and corners can be inspected."""
    rows, labels = [], []
    for k in range(min(2, len(names))):
        idx = np.flatnonzero(y == k)[:per_row]
        rows += [to_unit(real[idx]), to_unit(rec[idx])]
        labels += [f"{names[k]} real", f"{names[k]} reconstructed"]
        if gen is not None:
            rows.append(to_unit(gen[k * n : k * n + per_row]))
            labels.append(f"{names[k]} generated")
    save_grid(path, rows, "jet", labels, min_cell=256)


def measure(run: Path, samples: int, picture_path: Path | None = None) -> dict:
    cfg = config_for(run, None)
    ds, split = prepare_run_data(run, None, run_data_config(run, cfg.data))
    real = ds.images[split["test"]]
    vae = load_run_autoencoder(run, torch.device("cpu"))
    rec = reconstruct(vae, real)
    row = {"run": str(run), "n_test": int(len(real)), "reconstructed": compare_borders(real, rec),
           "reconstructed_texture": compare_texture(to_unit(real), to_unit(rec))["ratio_to_real"],
           "autoencoder": trained_with(run, vae), "val": last_val(run)}
    gen = generated(run, samples)
    if gen is not None:
        row["generated"] = compare_borders(real, gen)
    if picture_path is not None:
        picture(picture_path, real, ds.labels[split["test"]], rec, gen, samples, list(ds.identities))
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--name", default="runs")
    p.add_argument("--samples", type=int, default=0, help="generated windows per identity (0: none)")
    p.add_argument("--picture", type=Path, help="PNG of real / reconstructed / generated rows (first run)")
    a = p.parse_args(argv)
    rows = [measure(r, a.samples, a.picture if i == 0 else None) for i, r in enumerate(a.runs)]
    print(f"{'run':40s} {'set':13s} " + " ".join(f"{k[-12:]:>12s}" for k in SHOWN) + "  ok")
    for row in rows:
        real = row["reconstructed"]["stats"]
        print(f"{row['run'][-40:]:40s} {'real':13s} "
              + " ".join(f"{real[k]['real_mean']:12.3f}" for k in SHOWN))
        for part in ("reconstructed", "generated"):
            if part in row:
                s = row[part]["stats"]
                print(f"{'':40s} {part:13s} " + " ".join(f"{s[k]['mean']:12.3f}" for k in SHOWN)
                      + f"  {row[part]['ok']}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"borders_{a.name}.json"
    out.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
