"""Synthetic training data: real-seeded sampling sources, sample filters, real + generated folders."""
