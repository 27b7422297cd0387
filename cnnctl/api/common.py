"""The front door's shared pieces: reading a config (and applying its backend), finding a run, the types the
other modules take."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

from cnnctl import runtime
from cnnctl.errors import ConfigError, RunError, shown_path, shown_value
from cnnctl.runs import contract
from cnnctl.runs.folder import Run, resolve_run

if TYPE_CHECKING:  # for annotations only: importing them would load pydantic, numpy or TensorFlow
    from cnnctl.config.schema import Config
    from cnnctl.workflows.train import TrainResult

ConfigLike = Union[str, Path, Mapping[str, Any], "Config"]
RunLike = Union[str, Path, Run, "TrainResult"]
PathLike = Union[str, Path]
ARRAYS_FILE = "arrays.npz"  # a run trained on arrays keeps them here, so evaluate and resume can reload them


# ---------------------------------------------------------------- configs and runs


def prepare_environment() -> None:
    """Settings TensorFlow reads once, at its import (quiet logs, oneDNN kernels on x86 CPUs); a value the user
    exported wins. The command line calls it first; a Python program may, before it imports TensorFlow."""
    runtime.prepare_tensorflow_environment()


def describe_model(model: Any) -> Any:
    """The layer table of a Keras model: per layer its output shape, parameters, receptive field and FLOPs."""
    from cnnctl.model.summary import describe

    return describe(model)


def load(config: ConfigLike, overrides: Sequence[str] = (), name: Optional[str] = None) -> Config:
    """Read a config (a YAML file, a dict shaped like one, or a `Config`) with `--set` style overrides, and put
    Keras on the config's `backend:` before anything imports it. The one way every command reads a config.

    Args:
        config: the config.
        overrides: changes such as "train.epochs=3", applied in order. Defaults to ().
        name: the run name (`--name`), taken as the string it is: not read as YAML as a `--set name=...` would
            be, where `123` is a number and `null` no name at all. Defaults to None (the config's own).

    Returns:
        The validated Config, every default filled in.
    """
    from cnnctl.config.loading import load_config
    from cnnctl.config.schema import run_name_problem

    problem = None if name is None else run_name_problem(name)
    if problem:  # before the config is read: the mistake is the option's, whatever the file holds
        raise ConfigError(f"--name{f' {shown_path(name, limit=200)}' if name else ''}: {problem}")
    resolved = load_config(config, overrides)
    if name is not None:
        resolved.name = name
    runtime.use_backend(resolved.backend)
    return resolved


def expect(value: Any, kinds: tuple, name: str, example: str) -> Any:
    """`value` when it is one of `kinds` (a bool is never a number), else one ConfigError line naming the argument
    as the command line names it: Python's own TypeError would come from deep inside pathlib or numpy."""
    if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds):
        return value
    raise ConfigError(f"{name} {shown_value(value)}: give {example}")


def find_run(run: RunLike, runs_dir: Optional[PathLike] = None) -> Run:
    """A run folder, a run id in `runs_dir`, "last", a `Run` or a `TrainResult` → the Run. Temporary files a
    killed writer left in it are removed on the way."""
    if isinstance(run, Run):
        return run
    if isinstance(run, (str, Path)):
        return resolve_run(str(run), runs_dir)
    if hasattr(run, "run") and isinstance(run.run, Run):  # a TrainResult
        return run.run
    raise RunError(f"run: {run!r} is not a run; give a run folder, a run id, `last` or a TrainResult")


def _use_run_backend(run: Run) -> None:
    """A run's own `backend:`, applied before Keras is imported."""
    from cnnctl.config.loading import load_config

    runtime.use_backend(load_config(run.file(contract.CONFIG)).backend)


def _origin(config: ConfigLike) -> str:
    """The file named in data and config errors, when the config came from one."""
    return str(config) if isinstance(config, (str, Path)) else ""
