"""The project's user-facing error: one clear message, non-zero exit from the CLI."""


class DopplerDiffError(Exception):
    """An error caused by user input (files, arguments, configs); the CLI prints it without a traceback."""


class ConfigError(DopplerDiffError):
    """A config file or override is invalid."""


class DataError(DopplerDiffError):
    """Input data is missing, unreadable or malformed."""
