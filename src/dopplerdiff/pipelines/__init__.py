"""The diffusers-style pipelines, laid out as diffusers lays out its own.

``pipeline_dopplerdiff`` (DopplerDiffPipeline, continuous latents) and ``pipeline_vq_diffusion``
(DopplerVQDiffusionPipeline, VQ codes) sample; ``sampling`` holds the helpers of their loops (guidance,
mixtures, img2img, masks); ``components`` reads a saved pipeline's parts; ``auto_pipeline`` picks the class
from ``model_index.json``.
"""

from dopplerdiff.pipelines.auto_pipeline import load_pipeline, load_run_pipeline
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.pipelines.pipeline_vq_diffusion import DopplerVQDiffusionPipeline

__all__ = ["DopplerDiffPipeline", "DopplerVQDiffusionPipeline", "load_pipeline", "load_run_pipeline"]
