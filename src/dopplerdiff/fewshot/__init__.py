"""Few-shot protocols: a generator trained on other people adapted to a new one from k windows, scored by
classifiers that share nothing with it. A stage of its own: it trains (first stage, generator, identity
rows) and evaluates (classifier arms), so it sits above both ``train`` and ``evaluate``."""
