"""dopplerdiff: identity-conditional latent diffusion for radar micro-Doppler spectrograms."""

__version__ = "0.1.0"
