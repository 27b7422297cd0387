"""Errors a user can fix. The CLI prints them as one `error:` line and exits with code 2."""


class CnnctlError(Exception):
    """Base class: the message is complete and meant for the user as it is."""


class ConfigError(CnnctlError):
    """The YAML file, a `--set` override or the network it describes is wrong."""


class DataError(CnnctlError):
    """The data named by the config cannot be loaded or split as asked."""


class RunError(CnnctlError):
    """A run folder is missing, incomplete or cannot be written."""


class Interrupted(KeyboardInterrupt):
    """A signal (Ctrl-C, SIGTERM) stopped a command. The CLI prints the message and exits 128 + the signal
    number, the shell's convention (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        import signal

        return signal.Signals(self.signum).name
