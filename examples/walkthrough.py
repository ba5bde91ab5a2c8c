"""One sample's path in one script: folder -> latent -> denoiser -> sample -> metric.

The readable version of what `dopplerdiff run` does, in the order a window travels, with nothing but the
building blocks of the package (as diffusers' example scripts are written against diffusers). Besides this
script, a reader opens nine modules of ``src/dopplerdiff/`` (and the ``config/`` dataclasses):

    data/images.py            the folder -> (N, C, H, W) windows in [-1, 1]; write_image back to the colormap
    data/split.py             the leak-free split: train / gap / val / gap / test blocks per recording
    models/autoencoder.py     AutoencoderKL, its measured latent scale and shift, encode / decode
    models/condition.py       identity -> cross-attention tokens, row K = the null identity of guidance
    models/denoiser.py        the UNet (or DiT) and ``denoise``
    schedulers.py             the DDPM training schedule and the samplers by name
    train/diffusion.py        ``diffusion_loss``: noise, timesteps, v/epsilon target, min-SNR weight
    pipelines/pipeline_dopplerdiff.py   sampling with classifier-free guidance, decode
    classifier.py             an identity classifier trained in memory, accuracy with a bootstrap interval

What the stages add on top of these lines (and where): checkpoints, resume, EMA, validation and logging
(``train/loop.py``), the spectral and adversarial first-stage losses (``train/losses.py``), the latent cache
(``train/latents.py``), the saved pipeline (``train/run_pipeline.py``), and the report's other metrics
(``evaluate/``).

    python examples/walkthrough.py --data ../shared/realdata/radar-access-system --out runs/walkthrough
    python examples/walkthrough.py --data DATA --profile smoke --ae-steps 20 --steps 20   # seconds, tiny
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from dopplerdiff.classifier import fit_classifier, identity_accuracy, predict
from dopplerdiff.config import load_config
from dopplerdiff.data.images import from_unit, load_spectrograms, write_image
from dopplerdiff.data.split import make_split
from dopplerdiff.models.autoencoder import build_autoencoder, encode, measure_latent_scale
from dopplerdiff.models.condition import build_condition_encoder
from dopplerdiff.models.denoiser import build_denoiser
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.schedulers import make_scheduler, training_scheduler
from dopplerdiff.train.diffusion import diffusion_loss


def batches(n: int, size: int, steps: int, gen: torch.Generator, desc: str):
    """``steps`` random index batches of ``size`` out of ``n`` (with replacement across batches)."""
    for _ in tqdm(range(steps), desc=desc):
        yield torch.randint(0, n, (min(size, n),), generator=gen)


def train_first_stage(x: torch.Tensor, cfg, steps: int, gen: torch.Generator):
    """AutoencoderKL on the training windows: L1 + KL (the stage adds a tiled spectral loss, EMA, ...)."""
    vae = build_autoencoder(cfg.autoencoder, cfg.data)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.autoencoder.train.lr)
    for idx in batches(len(x), cfg.autoencoder.train.batch_size, steps, gen, "first stage"):
        posterior = vae.encode(x[idx]).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        loss = F.l1_loss(recon, x[idx]) + cfg.autoencoder.loss.kl * posterior.kl().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    vae.eval().requires_grad_(False)
    # the latent convention: z_model = (z - shift) * scale with the training latents' mean and std
    measure_latent_scale(vae, [x[i:i + 64] for i in range(0, len(x), 64)])
    return vae


def train_denoiser(z: torch.Tensor, ids: torch.Tensor, k: int, cfg, steps: int, gen: torch.Generator):
    """The identity-conditional denoiser on model-space latents, with dropped ids for guidance."""
    dc = cfg.diffusion
    denoiser = build_denoiser(dc, z.shape[1], z.shape[2], k)
    cond_enc = build_condition_encoder(dc, k, dc.backbone)
    noise_scheduler = training_scheduler(dc.num_train_timesteps, dc.beta_schedule, dc.prediction_type)
    opt = torch.optim.AdamW([*denoiser.parameters(), *cond_enc.parameters()], lr=dc.train.lr)
    for idx in batches(len(z), dc.train.batch_size, steps, gen, "denoiser"):
        dropped = cond_enc.drop(ids[idx], dc.condition.dropout, generator=gen)  # null id K, prob. p
        loss = diffusion_loss(denoiser, cond_enc, noise_scheduler, z[idx], dropped, dc, generator=gen)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(denoiser.parameters(), dc.train.grad_clip)
        opt.step()
    return denoiser.eval(), cond_enc.eval(), noise_scheduler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder of ID_k/ spectrograms")
    ap.add_argument("--out", default="runs/walkthrough", help="where the sample images go")
    ap.add_argument("--profile", default="quick", help="sizes and recipes of this profile")
    ap.add_argument("--ae-steps", type=int, default=300)
    ap.add_argument("--steps", type=int, default=400, help="diffusion training steps")
    ap.add_argument("--per-identity", type=int, default=8, help="samples per person")
    args = ap.parse_args()
    cfg = load_config(args.profile)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)

    # 1. folder -> windows in [-1, 1] and the leak-free split
    data = load_spectrograms(Path(args.data), cfg.data, progress=True)
    split = make_split(data, cfg.data)
    train = split["train"]
    x_train, y_train = torch.from_numpy(data.images[train]), torch.from_numpy(data.labels[train])
    k = len(data.identities)
    print(f"{len(data)} windows of {k} people; train {len(x_train)}, test {len(split['test'])}")

    # 2. window -> latent through the first stage
    vae = train_first_stage(x_train, cfg, args.ae_steps, gen)
    with torch.no_grad():
        z = torch.cat([encode(vae, x_train[i:i + 64]) for i in range(0, len(x_train), 64)])

    # 3. latent + identity -> denoiser, trained with the diffusion loss
    denoiser, cond_enc, noise_scheduler = train_denoiser(z, y_train.long(), k, cfg, args.steps, gen)

    # 4. identity -> sample: the pipeline denoises from noise with classifier-free guidance and decodes
    scheduler = make_scheduler(cfg.diffusion.scheduler, noise_scheduler.config)
    pipe = DopplerDiffPipeline(vae, denoiser, cond_enc, scheduler, identities=data.identities,
                               colormap=cfg.data.colormap, channels=cfg.data.channels)
    wanted = [name for name in data.identities for _ in range(args.per_identity)]
    samples = pipe(wanted, num_inference_steps=cfg.diffusion.num_inference_steps,
                   guidance_scale=cfg.diffusion.guidance_scale, seed=cfg.seed, output_type="pt").images
    out = Path(args.out)
    for i, (name, img) in enumerate(zip(wanted, samples.numpy(), strict=True)):
        write_image(out / name / f"sample_{i:04d}.png", img, cfg.data.colormap)

    # 5. sample -> metric: is each sample recognised as its person by a classifier of real windows?
    clf = fit_classifier(data.images[train], data.labels[train], k, cfg.encoder,
                         steps=cfg.encoder.train.steps, seed=cfg.seed, progress=True)
    labels = np.repeat(np.arange(k), args.per_identity)
    for what, images, y in [("real test windows", data.images[split["test"]], data.labels[split["test"]]),
                            ("samples", from_unit(samples.numpy()), labels)]:
        acc = identity_accuracy(predict(clf, images)[0], y, k)
        lo, hi = acc["ci95"]
        print(f"identity accuracy of {what}: {acc['overall']:.3f} [{lo:.3f}, {hi:.3f}] (chance {1 / k:.3f})")
    print(f"samples in {out}/ID_k/")


if __name__ == "__main__":
    main()
