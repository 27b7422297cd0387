"""Errors a user can fix. The CLI prints them as one `error:` line and exits with code 2."""


class CnnctlError(Exception):
    """Base class: the message is complete and meant for the user as it is."""


class ConfigError(CnnctlError):
    """The YAML file, a `--set` override or the network it describes is wrong."""


class DataError(CnnctlError):
    """The data named by the config cannot be loaded or split as asked."""


class RunError(CnnctlError):
    """A run folder is missing, incomplete or cannot be written."""
