"""Editing with a trained pipeline: identity transfer (img2img), inpainting, interpolation."""
