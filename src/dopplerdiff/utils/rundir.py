"""RUN/: the one place that names the parts of a run directory and says which stages of it are complete.

A run holds ``config.yaml``, ``data.json`` (identities and split), ``manifest.json``, ``timings.json``, the
simulated ``data/`` (when no data folder was given), one folder per trained part (``encoder/``,
``autoencoder/``, ``latents/``, ``diffusion/``, ``decoder/``, ``pipeline/``), the outputs ``samples/`` and
``eval/``, the work dirs ``train/<stage>/`` (checkpoints, metrics) and ``tensorboard/``.
Every part is written atomically, so a stage is complete once its marker file exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dopplerdiff.errors import DopplerDiffError

# stage -> the file, relative to RUN, that exists only once the stage completed
MARKERS = {
    "simulate": "data/metadata.json",
    "data": "data.json",
    "encoder": "encoder/config.json",
    "autoencoder": "autoencoder/config.json",
    "latents": "latents/info.json",
    "diffusion": "pipeline/model_index.json",
    "decoder": "pipeline/decoder/config.json",  # the decoder adds itself to RUN/pipeline
    "generate": "samples/manifest.json",
    "evaluate": "eval/metrics.json",
}


@dataclass(frozen=True)
class RunDir:
    """A run directory: ``RunDir(path).pipeline`` is ``path/pipeline``; ``str()`` is the path itself, so
    messages naming the run read as before. ``RunDir(RunDir(p))`` is ``RunDir(p)``."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]):
        object.__setattr__(self, "root", Path(root))

    def __fspath__(self) -> str:
        return os.fspath(self.root)

    def __str__(self) -> str:
        return str(self.root)

    # -- files of the run ------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def data_record(self) -> Path:
        """``data.json``: the data root, identities and the fixed split (``data.run_data``)."""
        return self.root / "data.json"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def timings(self) -> Path:
        return self.root / "timings.json"

    # -- folders of the run ----------------------------------------------------------------------------
    @property
    def data(self) -> Path:
        """The simulated data folder (only when the run was started without a data folder)."""
        return self.root / "data"

    @property
    def encoder(self) -> Path:
        return self.root / "encoder"

    @property
    def autoencoder(self) -> Path:
        return self.root / "autoencoder"

    @property
    def latents(self) -> Path:
        return self.root / "latents"

    @property
    def diffusion(self) -> Path:
        """The denoiser and condition encoder as trained (RUN/pipeline is what sampling loads)."""
        return self.root / "diffusion"

    @property
    def decoder(self) -> Path:
        return self.root / "decoder"

    @property
    def pipeline(self) -> Path:
        return self.root / "pipeline"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    def work(self, stage: str) -> Path:
        """``train/<stage>``: the stage's checkpoints, metrics and other work files."""
        return self.root / "train" / stage

    # -- completion ------------------------------------------------------------------------------------
    def marker(self, stage: str) -> Path:
        """The file that exists only once ``stage`` (a key of ``MARKERS``) completed."""
        if stage not in MARKERS:
            raise DopplerDiffError(f"unknown run stage '{stage}' (known: {', '.join(MARKERS)})")
        return self.root / MARKERS[stage]

    def is_complete(self, stage: str) -> bool:
        return self.marker(stage).exists()

    def has_checkpoints(self, stage: str) -> bool:
        """Whether ``train/<stage>`` holds a checkpoint an interrupted stage can resume from."""
        return any(self.work(stage).glob("checkpoint-*"))
