"""What every section of one evaluation shares (``EvalContext``): settings, the run's data as real window sets
in the spectrogram encoder's feature space, that encoder, the independent judge, and the state the metrics
accumulate in."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dopplerdiff.config import Config
from dopplerdiff.data.images import SpectrogramSet
from dopplerdiff.data.run_data import prepare_run_data
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.evaluate.independent import JUDGE_PART, IndependentEval
from dopplerdiff.evaluate.loading import Arrays, load_run_encoder, run_data_config
from dopplerdiff.evaluate.metrics import MIN_SAMPLES_FD, identity_accuracy
from dopplerdiff.evaluate.report import ExampleRow, MemorisationPair
from dopplerdiff.evaluate.windows import WindowSet, distribution, encode_windows


@dataclass
class EvalState:
    """Everything computed so far; the report and metrics.json are built from it."""

    metrics: dict[str, Any]
    missing: list[str] = field(default_factory=list)
    plots: dict[str, bytes] = field(default_factory=dict)
    examples: list[ExampleRow] = field(default_factory=list)
    pairs: list[MemorisationPair] = field(default_factory=list)
    # wall seconds of each part of the evaluation (metrics.json "seconds_by_part"): where the time goes
    seconds: dict[str, float] = field(default_factory=dict)
    moved: float = 0.0  # seconds spent inside some part's block that ``credit`` gave to another part

    @contextmanager
    def timed(self, part: str) -> Iterator[None]:
        """Add the wall seconds of the block to ``seconds[part]``, less what ``credit`` moved out of it."""
        t0, moved0 = time.perf_counter(), self.moved
        try:
            yield
        finally:
            own = time.perf_counter() - t0 - (self.moved - moved0)
            self.seconds[part] = round(self.seconds.get(part, 0.0) + own, 2)

    def credit(self, part: str, seconds: float) -> None:
        """Count ``seconds`` (spent inside another part's block) to ``part``: the judge and the C2STs are
        trained where their windows appear, but their cost is theirs."""
        self.seconds[part] = round(self.seconds.get(part, 0.0) + seconds, 2)
        self.moved += seconds


@dataclass
class EvalContext:
    """What every section of one evaluation shares: settings, real window sets, encoder, judge, state."""

    cfg: Config
    device: torch.device
    ids: list[str]
    train: WindowSet
    val: Arrays
    test: WindowSet
    encoder: Any
    st: EvalState
    ind: IndependentEval | None
    progress: bool
    confusions: dict[str, Any] = field(default_factory=dict)
    # the real windows as loaded (walking conditions, files) and the model-size synthetic sets scored so far
    sets: dict[str, SpectrogramSet] = field(default_factory=dict)
    synthetic: dict[str, Arrays] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return len(self.ids)


def check_sample_sizes(n_test: int, k: int, num_per_identity: int) -> None:
    """Fréchet distance needs a covariance: at least MIN_SAMPLES_FD windows in each set."""
    if n_test < MIN_SAMPLES_FD:
        raise DopplerDiffError(f"the run's real test split has {n_test} window(s); the Fréchet distance "
                               f"needs at least {MIN_SAMPLES_FD} (use more data or a larger data.split.test)")
    if k * num_per_identity < MIN_SAMPLES_FD:
        raise DopplerDiffError(f"--num-per-identity {num_per_identity} x {k} identities gives fewer than "
                               f"{MIN_SAMPLES_FD} samples; the Fréchet distance needs at least "
                               f"{MIN_SAMPLES_FD}")


def build_context(run: Path, cfg: Config, data_root: Path | None, device: torch.device,
             progress: bool) -> tuple[EvalContext, Any]:
    """Data, encoder, real window sets, the independent judge and the metrics skeleton."""
    ecfg = cfg.evaluate
    cfg.data = run_data_config(run, cfg.data)
    ds, split = prepare_run_data(run, data_root, cfg.data, progress=progress)
    ids, k = list(ds.identities), len(ds.identities)
    tr, va, te = (ds.subset(split[p]) for p in ("train", "val", "test"))
    check_sample_sizes(len(te), k, ecfg.num_per_identity)
    settings = {name: getattr(ecfg, name) for name in
                ("num_per_identity", "steps", "scheduler", "guidance", "seed", "bootstrap", "knn_k")}
    settings.update(data_size=cfg.data.size, channels=cfg.data.channels, device=str(device))
    st = EvalState(metrics={
        "run": str(run.resolve()), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "identities": ids,
        "settings": settings, "counts": {"train": len(tr), "val": len(va), "test": len(te)},
        "accuracy": {}, "distribution": {},
    })
    encoder = load_run_encoder(run, cfg, (tr.images, tr.labels), (va.images, va.labels), ids, st.missing,
                               progress)
    encoder = encoder.to(device)
    train = encode_windows(encoder, tr.images, tr.labels, tr.files)
    test = encode_windows(encoder, te.images, te.labels, te.files)
    st.metrics["accuracy"]["real_test"] = identity_accuracy(test.logits, test.y, k, bootstrap=ecfg.bootstrap,
                                                            seed=ecfg.seed)
    st.metrics["distribution"]["train_vs_test"] = distribution(train.f, test.f, ecfg.knn_k, ecfg.seed)
    ind = None
    if ecfg.judge_steps > 0:
        ind = IndependentEval(ecfg, (train.x, train.y), (va.images, va.labels), (test.x, test.y), k, device,
                              on_seconds=lambda sec: st.credit(JUDGE_PART, sec))
    else:
        st.missing.append("independent judge, C2ST and texture statistics disabled "
                          "(evaluate.judge_steps = 0)")
    ctx = EvalContext(cfg, device, ids, train, (va.images, va.labels), test, encoder, st, ind, progress,
                      {"real test": st.metrics["accuracy"]["real_test"]["confusion"]},
                      sets={"train": tr, "val": va, "test": te})
    return ctx, ds
