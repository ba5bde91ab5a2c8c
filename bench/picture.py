"""The README picture: for a few identities, a row of real test windows above a row of generated samples.

    python bench/picture.py --run RUN [--identities ID_1,ID_2] [--per-row 6] [--out docs/samples.png]

Real rows come from the run's test split (at the training resolution), generated rows from RUN/samples
(written by `dopplerdiff run`) read back through the same data layer, so both pass the same colormap
inversion and resizing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dopplerdiff.config import config_from_dict
from dopplerdiff.data.contact import save_grid
from dopplerdiff.data.images import load_spectrograms, to_unit
from dopplerdiff.data.run_data import prepare_run_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--identities", default="", help="comma-separated names (default: the first 4)")
    ap.add_argument("--per-row", type=int, default=6)
    ap.add_argument("--out", type=Path, default=Path("docs/samples.png"))
    args = ap.parse_args()
    import yaml

    cfg = config_from_dict(yaml.safe_load((args.run / "config.yaml").read_text()))
    ds, split = prepare_run_data(args.run, None, cfg.data)
    gen = load_spectrograms(args.run / "samples", cfg.data)
    names = [n for n in args.identities.split(",") if n] or ds.identities[:4]
    rows, labels = [], []
    for name in names:
        k = ds.identities.index(name)
        test = split["test"][ds.labels[split["test"]] == k][: args.per_row]
        g = np.flatnonzero(gen.labels == gen.identities.index(name))[: args.per_row]
        rows += [to_unit(ds.images[test]), to_unit(gen.images[g])]
        labels += [f"{name} real", f"{name} generated"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_grid(args.out, rows, cfg.data.colormap, labels=labels)
    print(json.dumps({"picture": str(args.out), "identities": names}))


if __name__ == "__main__":
    main()
