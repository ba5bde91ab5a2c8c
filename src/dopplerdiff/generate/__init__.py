"""Generation with a trained pipeline: a ``GenerationPlan`` (what and how), ``sample(pipe, plan)`` (the
images, labels and seeds) and ``write_plan`` (files in the input data's layout, with a manifest).

Sample ``i`` of identity ``k`` always starts from ``sample_seed(seed, k, i)``, so any sample can be
regenerated alone. ``write_generated`` is the plain-sampling shortcut of the Python API.
"""

from dopplerdiff.generate.generate import (
    FORMATS,
    Drawn,
    check_format,
    generate_run,
    output_name,
    render,
    sample,
    sample_seed,
    strategy_record,
    write_generated,
    write_plan,
)
from dopplerdiff.generate.plan import GenerationPlan

__all__ = [
    "FORMATS", "Drawn", "GenerationPlan", "check_format", "generate_run",
    "output_name", "render", "sample", "sample_seed", "strategy_record", "write_generated", "write_plan",
]
