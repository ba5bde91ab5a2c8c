"""``python -m dopplerdiff``."""

from dopplerdiff.cli import main

main()
