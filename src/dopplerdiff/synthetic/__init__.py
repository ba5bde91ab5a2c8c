"""Synthetic training data: real-seeded sampling sources, sample filters and augmented training folders."""
