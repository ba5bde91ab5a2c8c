"""DISTRIBUTED: `torchrun --nproc_per_node 2` (gloo on CPU) trains the diffusion stage on smoke sizes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dopplerdiff.config import load_config

pytestmark = pytest.mark.slow


def test_torchrun_two_processes_train_diffusion(tmp_path, sim_data):
    from dopplerdiff.train.autoencoder import train_autoencoder
    from dopplerdiff.train.latents import cache_latents

    if shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("torchrun is not installed next to this Python")
    run = tmp_path / "run"
    train_autoencoder(run, load_config("smoke"), data_root=sim_data, progress=False)
    cache_latents(run, progress=False)
    cli = Path(sys.executable).parent / "dopplerdiff"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:  # torchrun's --master_port 0 does not pick a free port for gloo
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        str(Path(sys.executable).parent / "torchrun"),
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
        str(cli),
        "train-diffusion",
        "-r",
        str(run),
        "-q",  # long options would be parsed by torchrun
        "diffusion.train.steps=3",
        "diffusion.train.batch_size=4",
        "diffusion.train.val_every=3",
    ]
    # Own process group: on a hang, the workers die with torchrun instead of outliving the test.
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=170)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail("torchrun did not finish in 170 s:\n" + stdout[-2000:] + stderr[-2000:])
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    log = [json.loads(line) for line in (run / "train/diffusion/log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in log if r.get("kind") != "val"]
    assert steps == [1, 2, 3]  # written once (main process only), global batch split over 2 processes
    assert any(r.get("kind") == "val" for r in log)
    from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline

    pipe = DopplerDiffPipeline.from_pretrained(run / "pipeline")
    assert json.loads((run / "pipeline/manifest.json").read_text())["step"] == 3
    assert pipe.identities == json.loads((run / "data.json").read_text())["identities"]
