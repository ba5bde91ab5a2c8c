"""``python -m dopplerdiff.cli`` (used by torchrun / accelerate launch)."""

from dopplerdiff.cli import main

main()
