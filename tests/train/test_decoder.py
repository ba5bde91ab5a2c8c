"""The diffusion decoder (smoke sizes: 16x16 windows, 2-level nets, 2 sampler steps): training, decoding,
saving in the pipeline, resume, bad configurations, and generation decoding through it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from dopplerdiff.config import load_config
from dopplerdiff.errors import ConfigError, DataError, DopplerDiffError
from dopplerdiff.models.decoder import DiffusionDecoder, load_decoder
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.train.decoder import DecoderPairs, train_decoder

ON = ["decoder.kind=diffusion"]


@pytest.fixture(scope="module")
def trained(ae_run, tmp_path_factory):
    """ae_run + a denoiser + a diffusion decoder (added to the existing pipeline)."""
    from dopplerdiff.train.diffusion import train_diffusion

    run = tmp_path_factory.mktemp("dec-trained") / "run"
    shutil.copytree(ae_run, run)
    cfg = load_config("smoke", ON)
    train_diffusion(run, cfg, progress=False)
    train_decoder(run, cfg, progress=False)
    return run


@pytest.fixture
def run(ae_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(ae_run, dst)
    return dst


def _latents(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_training_writes_decoder_metrics_and_grid(trained):
    dec = load_decoder(trained / "decoder")
    assert dec.config.size == 16 and dec.config.latent_channels == 4
    metrics = json.loads((trained / "train/decoder/metrics.json").read_text())
    assert metrics["step"] == 4 and metrics["val"]["val_loss"] > 0 and "val_psnr" in metrics["val"]
    assert (trained / "train/decoder/val/step-000004/grid.png").is_file()
    assert json.loads((trained / "decoder/manifest.json").read_text())["split"] == "train"


def test_decode_shape_range_and_seeds(trained):
    dec = load_decoder(trained / "decoder")
    z = _latents()
    a = dec.decode(z, generator=torch.Generator().manual_seed(0))
    assert a.shape == (3, 1, 16, 16) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, dec.decode(z, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(a, dec.decode(z, generator=torch.Generator().manual_seed(1)))  # stochastic
    assert not torch.equal(a, dec.decode(_latents(seed=5), generator=torch.Generator().manual_seed(0)))


def test_pipeline_saves_and_loads_the_decoder(trained, tmp_path):
    pipe = DopplerDiffPipeline.from_pretrained(trained / "pipeline")
    assert isinstance(pipe.decoder, DiffusionDecoder) and pipe.decodes_with_diffusion
    assert json.loads((trained / "pipeline/model_index.json").read_text())["decoder"][1] == "DiffusionDecoder"
    pipe.save_pretrained(tmp_path / "copy")
    again = DopplerDiffPipeline.from_pretrained(tmp_path / "copy")
    for k, v in pipe.decoder.state_dict().items():
        torch.testing.assert_close(again.decoder.state_dict()[k], v)


def test_pipeline_without_decoder_still_saves_and_loads(tiny_pipeline_factory, tmp_path):
    pipe = tiny_pipeline_factory()
    pipe.save_pretrained(tmp_path / "p")
    assert not (tmp_path / "p/decoder").exists()
    assert DopplerDiffPipeline.from_pretrained(tmp_path / "p").decoder is None


def test_pipeline_decodes_through_it_and_seeds_fix_the_image(trained):
    pipe = DopplerDiffPipeline.from_pretrained(trained / "pipeline")
    pipe.set_progress_bar_config(disable=True)

    def sample(seed: int) -> np.ndarray:
        return pipe([0, 1], num_inference_steps=2, generator=[torch.Generator().manual_seed(seed + i)
                                                              for i in range(2)]).images

    a = sample(0)
    assert a.shape == (2, 16, 16, 1)
    np.testing.assert_array_equal(a, sample(0))
    pipe.use_decoder = False  # the same latents through the autoencoder's decoder
    assert not np.array_equal(a, sample(0))


def test_generate_cli_uses_the_decoder(trained, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dopplerdiff.cli import app

    calls = []
    original = DiffusionDecoder.decode

    def counting(self, *args, **kwargs):
        calls.append(args[0].shape[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DiffusionDecoder, "decode", counting)
    r = CliRunner().invoke(app, ["generate", "--run", str(trained), "--all", "--num", "2", "--steps", "2",
                                 "--out", str(tmp_path / "g"), "--format", "npy", "--quiet"])
    assert r.exit_code == 0, r.output
    assert sum(calls) == 6  # 3 identities x 2 samples, every one decoded by the diffusion decoder


def test_upsampler_generates_at_the_target_size(run):
    cfg = load_config("smoke", [*ON, "decoder.size=32"])
    train_decoder(run, cfg, progress=False)
    dec = load_decoder(run / "decoder")
    assert dec.decode(_latents(2), generator=torch.Generator().manual_seed(0)).shape == (2, 1, 32, 32)


def test_vae_image_conditioning_trains_and_needs_the_image(run):
    train_decoder(run, load_config("smoke", [*ON, "decoder.vae_image=true"]), progress=False)
    dec = load_decoder(run / "decoder")
    assert dec.unet.config.in_channels == 1 + 4 + 1
    with pytest.raises(DopplerDiffError, match="vae_image"):
        dec.decode(_latents(1))
    assert dec.decode(_latents(1), torch.zeros(1, 1, 16, 16)).shape == (1, 1, 16, 16)


def test_resume_continues_to_the_weights_of_an_uninterrupted_run(ae_run, tmp_path):
    runs = {}
    for name in ("whole", "split"):
        runs[name] = tmp_path / name
        shutil.copytree(ae_run, runs[name])
    cfg = load_config("smoke", ON)
    train_decoder(runs["whole"], cfg, progress=False)
    # interrupted after step 2: only the step-2 checkpoint survives
    train_decoder(runs["split"], load_config("smoke", [*ON, "decoder.train.steps=2"]), progress=False)
    shutil.rmtree(runs["split"] / "decoder")
    train_decoder(runs["split"], cfg, resume="latest", progress=False)
    log = [json.loads(x) for x in (runs["split"] / "train/decoder/log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "kind" not in r] == [1, 2, 3, 4]
    a, b = (load_decoder(runs[k] / "decoder").state_dict() for k in ("whole", "split"))
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_existing_decoder_needs_resume(trained):
    with pytest.raises(DopplerDiffError, match="--resume latest"):
        train_decoder(trained, load_config("smoke", ON), progress=False)


def test_bad_configurations_are_refused(run, tmp_path):
    with pytest.raises(ConfigError, match="decoder.kind"):
        train_decoder(run, load_config("smoke"), progress=False)  # the smoke profile keeps the VAE decoder
    (tmp_path / "empty").mkdir()
    with pytest.raises(DopplerDiffError, match="trained autoencoder"):
        train_decoder(tmp_path / "empty", load_config("smoke", ON), progress=False)
    shutil.rmtree(run / "latents")
    with pytest.raises(DataError, match="cache-latents"):
        train_decoder(run, load_config("smoke", ON), progress=False)
    with pytest.raises(ConfigError, match="decoder.size"):
        load_config("smoke", [*ON, "decoder.size=24"])  # not a multiple of data.size 16
    with pytest.raises(ConfigError, match="norm_num_groups"):
        load_config("smoke", [*ON, "decoder.channels=[6,16]"])
    with pytest.raises(ConfigError, match="decoder.kind"):
        load_config("smoke", ["decoder.kind=vq-diffusion"])


def test_unknown_sampler_is_refused(run):
    with pytest.raises(DopplerDiffError, match="unknown scheduler"):
        train_decoder(run, load_config("smoke", [*ON, "decoder.scheduler=nope"]), progress=False)


def test_decoder_trained_first_joins_the_pipeline_of_train_diffusion(run):
    from dopplerdiff.train.diffusion import train_diffusion

    cfg = load_config("smoke", ON)
    train_decoder(run, cfg, progress=False)
    assert not (run / "pipeline").exists()
    train_diffusion(run, cfg, progress=False)
    assert DopplerDiffPipeline.from_pretrained(run / "pipeline").decoder is not None


def test_pairs_roll_latent_and_image_together():
    mean = torch.arange(8.0).repeat(1, 1, 4, 1)  # (1, 1, 4, 8): value = latent column
    img = torch.arange(16.0).repeat(1, 1, 8, 1) // 2  # (1, 1, 8, 16): value = latent column of the pixel
    pairs = DecoderPairs(mean, torch.zeros_like(mean), img, scale=1.0, shift=0.0, sample=False,
                         time_shift=True)
    torch.manual_seed(0)
    firsts = set()
    for _ in range(20):
        item = pairs[0]
        first = item["latents"][0, 0, 0]
        firsts.add(float(first))
        # the pixel columns of latent column c hold c: the image moved by the same time span
        assert item["pixel_values"][0, 0, 0] == first and item["pixel_values"][0, 0, 1] == first
    assert len(firsts) > 1  # shifts vary between draws


def test_run_adds_the_decoder_stage_only_when_configured():
    from dopplerdiff.workflow import stages

    assert "train decoder" not in [s.name for s in stages(simulated=True)]
    names = [s.name for s in stages(simulated=True, decoder=True)]
    assert names.index("train decoder") == names.index("train diffusion") + 1


def test_evaluation_brings_upsampled_samples_to_the_data_size():
    from dopplerdiff.evaluate.evaluate import to_data_size

    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    out = to_data_size(x, (1, 2, 2))
    np.testing.assert_allclose(out[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    assert to_data_size(x, (1, 4, 4)) is x


def test_a_partial_decoder_train_section_keeps_the_decoder_defaults(tmp_path):
    from dopplerdiff.config import DecoderConfig, LoopConfig

    path = tmp_path / "c.yaml"
    path.write_text("profile: custom\n")  # no decoder section, as in runs made before the decoder existed
    cfg = load_config(path, ["decoder.train.steps=900"])
    assert cfg.decoder.train.steps == 900
    assert cfg.decoder.train.lr == DecoderConfig().train.lr != LoopConfig().lr
