"""Model selection on validation: the best-so-far weights, kept on disk so a resumed run remembers them.

``BestWeights(work_dir / "best", lower_is_better=True)``:

* ``restore(resumed_step)`` at the start: keep a record written by the trajectory being resumed (its step is
  not after the checkpoint), forget any other (a fresh start, or a record from steps the resume rewinds);
* ``offer(value, step, modules)`` after each validation: when ``value`` is strictly better, the modules'
  state dicts are written (safetensors, atomically) with ``best.json`` = {step, value};
* ``load_into(modules)`` at the end: the best weights replace the modules' current ones; returns the record.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from dopplerdiff.errors import DopplerDiffError

WEIGHTS, RECORD = "weights.safetensors", "best.json"


class BestWeights:
    def __init__(self, path: Path, lower_is_better: bool = True):
        self.path, self.lower = Path(path), lower_is_better
        self.value: float | None = None

    def _record(self) -> dict[str, Any] | None:
        file = self.path / RECORD
        if not file.is_file():
            return None
        try:
            return json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise DopplerDiffError(f"'{file}' is damaged ({exc}); delete '{self.path}' to select anew"
                                   ) from exc

    def restore(self, resumed_step: int | None) -> None:
        rec = self._record()
        if rec is not None and resumed_step is not None and int(rec["step"]) <= resumed_step:
            self.value = float(rec["value"])
        else:
            shutil.rmtree(self.path, ignore_errors=True)
            self.value = None

    def _better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.value is None:
            return True
        return value < self.value if self.lower else value > self.value

    def offer(self, value: float, step: int, modules: dict[str, nn.Module]) -> bool:
        if not self._better(value):
            return False
        tmp = self.path.with_name(self.path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        tensors = {f"{name}.{k}": v.detach().cpu().contiguous() for name, m in modules.items()
                   for k, v in m.state_dict().items()}
        save_file(tensors, str(tmp / WEIGHTS))
        (tmp / RECORD).write_text(json.dumps({"step": int(step), "value": float(value)}))
        shutil.rmtree(self.path, ignore_errors=True)
        tmp.rename(self.path)
        self.value = float(value)
        return True

    def load_into(self, modules: dict[str, nn.Module]) -> dict[str, Any] | None:
        rec = self._record()
        if rec is None:
            return None
        tensors = load_file(str(self.path / WEIGHTS))
        for name, m in modules.items():
            prefix = f"{name}."
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            m.load_state_dict(state)
        return rec
