"""Generation with a trained pipeline: a ``GenerationPlan`` (what and how), ``sample(pipe, plan)`` (the
images, labels and seeds) and ``write_plan`` (files in the input data's layout, with a manifest).

Sample ``i`` of identity ``k`` always starts from ``sample_seed(seed, k, i)``, so any sample can be
regenerated alone. ``write_generated`` is the plain-sampling shortcut of the Python API.
"""

from dopplerdiff.generate.plan import GenerationPlan
from dopplerdiff.generate.samples import Drawn, draw, generate_samples, render, sample, sample_seed
from dopplerdiff.generate.writer import (
    FORMATS,
    check_format,
    generate_run,
    output_name,
    strategy_record,
    write_generated,
    write_plan,
)

__all__ = [
    "FORMATS", "Drawn", "GenerationPlan", "check_format", "draw", "generate_run", "generate_samples",
    "output_name", "render", "sample", "sample_seed", "strategy_record", "write_generated", "write_plan",
]
