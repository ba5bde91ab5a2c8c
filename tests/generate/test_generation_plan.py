"""The generation plan: checked once (one error naming the bad field), built alike from CLI options and
configs, and ``sample(pipe, plan)`` gives exactly the pipeline's own images for the plan's seeds."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from dopplerdiff.config import load_config
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.generate import GenerationPlan, sample, sample_seed

NAMES = ["ID_1", "ID_2", "ID_3"]


class _Sources:
    """img2img sources: job (k, i) starts from a fixed ramp shifted by k and i."""

    origin = "test"

    def image(self, k, i):
        return np.linspace(-1, 1, 256, dtype=np.float32).reshape(1, 16, 16) * (0.5 + 0.1 * k) + 0.01 * i

    def name(self, k, i):
        return f"src_{k}_{i}"


class _OddIndices:
    """A filter that accepts every second sample (seed index 1, 3, ...)."""

    def __init__(self):
        self.index = 0

    def accept(self, images, labels):
        ok = (np.arange(self.index, self.index + len(images)) % 2) == 1
        self.index += len(images)
        return ok


@pytest.fixture(scope="module")
def pipe(tiny_pipeline_factory):
    return tiny_pipeline_factory(names=NAMES, native_size=24)


@pytest.mark.parametrize(("field", "value"), [
    ("count", 0), ("count", 1.5), ("steps", 0), ("guidance", math.nan), ("guidance", -1.0),
    ("guidance", math.inf), ("scheduler", "plms"), ("seed", -1), ("interval", (0.8, 0.2)),
    ("strength", 0.5), ("attempts", 0), ("batch_size", 0), ("identities", ()),
    ("condition_guidance", math.nan),
])
def test_each_bad_field_is_one_error_naming_it(field, value):
    with pytest.raises(DopplerDiffError, match=f"^generation plan: {field} "):
        GenerationPlan(**{field: value})


def test_strength_with_sources_is_checked_against_the_steps():
    with pytest.raises(DopplerDiffError, match="^generation plan: strength .*no denoising step"):
        GenerationPlan(sources=_Sources(), strength=0.2, steps=2)
    with pytest.raises(DopplerDiffError, match="^generation plan: strength .*\\(0, 1\\]"):
        GenerationPlan(sources=_Sources(), strength=1.5)
    assert GenerationPlan(sources=_Sources(), strength=0.5, steps=2).strength == 0.5


def test_plan_is_frozen_and_replace_checks_again():
    plan = GenerationPlan(identities=["ID_1"], count=2)
    assert plan.identities == ("ID_1",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.count = 3  # type: ignore[misc]
    with pytest.raises(DopplerDiffError, match="generation plan: count"):
        plan.replace(count=0)


def test_plan_from_options_equals_plan_from_config():
    over = ["diffusion.num_inference_steps=7", "diffusion.guidance_scale=3.5", "diffusion.scheduler=ddim"]
    ids = ["ID_2"]
    from_config = GenerationPlan.from_options(load_config("smoke", over), count=4, seed=3, identities=ids)
    from_cli = GenerationPlan.from_options(load_config("smoke"), count=4, seed=3, identities=ids, steps=7,
                                           guidance=3.5, scheduler="ddim")
    assert from_cli == from_config
    assert from_config == GenerationPlan.from_diffusion(load_config("smoke", over).diffusion, count=4, seed=3,
                                                        identities=["ID_2"])
    ecfg = load_config("smoke", ["evaluate.steps=7", "evaluate.guidance=3.5", "evaluate.scheduler=ddim",
                                 "evaluate.seed=3"]).evaluate
    evaluated = GenerationPlan.from_evaluate(ecfg, count=4, identities=["ID_2"])
    assert evaluated == from_cli.replace(batch_size=evaluated.batch_size, mix_identities=True)


def _direct(pipe, jobs, seed, **call):
    """The pipeline called once with the seeds ``sample_seed`` gives these jobs."""
    gens = [torch.Generator().manual_seed(sample_seed(seed, k, i)) for k, i in jobs]
    return pipe([k for k, _ in jobs], generator=gens, output_type="pt", **call).images.float().numpy()


def test_sample_equals_the_pipeline_called_with_the_plans_seeds(pipe):
    plan = GenerationPlan(count=3, steps=2, guidance=2.0, scheduler="dpmpp", seed=5, batch_size=9)
    jobs = [(k, i) for k in range(3) for i in range(3)]
    call = {"num_inference_steps": 2, "guidance_scale": 2.0}
    # written outputs: one identity per batch (an identity's bits do not depend on the others requested)
    got = sample(pipe, plan, progress=False)
    want = np.concatenate([_direct(pipe, jobs[j : j + 3], 5, **call) for j in (0, 3, 6)])
    assert np.array_equal(got.images, want)
    assert got.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and got.indices.tolist() == [0, 1, 2] * 3
    assert got.seeds == [sample_seed(5, k, i) for k, i in jobs]
    assert got.acceptance[2] == {"attempts": 3, "passed": 3, "rate": 1.0, "kept": 3}
    # evaluation and validation: one batch of all nine (the last float bits may differ from the above)
    mixed = sample(pipe, plan.replace(mix_identities=True), progress=False)
    assert np.array_equal(mixed.images, _direct(pipe, jobs, 5, **call))
    assert np.allclose(mixed.images, got.images, atol=1e-5)


def test_sample_with_sources_interval_and_filter_equals_the_pipeline(pipe):
    src = _Sources()
    plan = GenerationPlan(identities=["ID_2"], count=2, steps=4, guidance=2.0, scheduler="ddim", seed=1,
                          interval=(0.2, 0.9), sources=src, strength=0.5, filter=_OddIndices(), attempts=3,
                          batch_size=4)
    got = sample(pipe, plan, progress=False)
    jobs = [(1, i) for i in range(4)]  # one batch of 4; the filter keeps seed indices 1 and 3
    want = _direct(pipe, jobs, 1, num_inference_steps=4, guidance_scale=2.0, guidance_interval=(0.2, 0.9),
                   image=np.stack([src.image(k, i) for k, i in jobs]), strength=0.5)
    assert got.indices.tolist() == [1, 3]
    assert np.array_equal(got.images, want[[1, 3]])
    assert got.acceptance[1] == {"attempts": 4, "passed": 2, "rate": 0.5, "kept": 2}


def _run(tmp_path, pipe, smoke_config):
    run = tmp_path / "run"
    pipe.save_pretrained(run / "pipeline")
    smoke_config.save(run / "config.yaml")
    (run / "data.json").write_text(json.dumps({"data_root": "x", "identities": NAMES, "split": {},
                                               "meta": {"colormap": "jet", "native_size": 24}}))
    return run


def test_generate_cli_exits_2_writing_nothing_on_a_bad_plan_field(tmp_path, pipe, smoke_config, cli):
    run = _run(tmp_path, pipe, smoke_config)
    out = tmp_path / "g"
    code, _, err = cli("generate", "--run", run, "--identity", "ID_2", "--num", "1", "--scheduler", "plms",
                       "--out", out, "--quiet")
    assert code == 2 and "generation plan: scheduler" in err and "valid: ddpm" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    code, _, err = cli("generate", "--run", run, "--identity", "ID_2", "--num", "1", "--out", out, "--quiet",
                       "diffusion.num_inference_steps=0")
    assert code == 2 and "num_inference_steps" in err and not out.exists()
