"""Workflows: `cnnctl tune`'s search space — every `tune:` path checked against the resolved config before a trial
runs, a trial's config made from the values Optuna picked, and Optuna's distribution for each path.
"""

from __future__ import annotations

from typing import Any, Optional

import optuna
import yaml

from cnnctl.config.loading import apply_override, dotted, key_path_parts, validate_config
from cnnctl.config.schema import Config
from cnnctl.errors import ConfigError, did_you_mean, in_config_file

# Paths a search must not vary: the validation split is what every trial is compared on, and the rest is tune's.
FIXED_PATHS = (
    "tune",
    "evaluate.split",
    "data.validation_split",
    "data.test_split",
    "data.fold",
    "data.source",
    "data.path",
    "name",
)


def check_search_space(config: Config, origin: str = "") -> None:
    """Every `tune:` path must exist in the resolved config and every end of its space must make a valid config;
    raises ConfigError naming the path. Nothing is built or loaded."""
    where = f"{origin or 'config'}: "
    if not config.tune:
        raise ConfigError(
            f"{where}tune: missing; cnnctl tune needs a `tune:` section mapping config paths to "
            "search spaces, e.g. tune: {train.optimizer.learning_rate: {log_uniform: [1e-4, 1e-2]}}"
        )
    raw = base_dict(config)
    for path, space in config.tune.items():
        for fixed in FIXED_PATHS:
            if path == fixed or path.startswith(fixed + ".") or path.startswith(fixed + "["):
                raise ConfigError(
                    f"{where}tune['{path}']: cannot be tuned: cnnctl tune compares every trial on "
                    f"the same validation split and sets {fixed} itself"
                )
        problem = missing_path(raw, path)
        if problem:
            raise ConfigError(f"{where}tune['{path}']: {problem}")
        for value in space.values:  # both ends of a range, every choice
            trial_raw = base_dict(config)
            apply_override(trial_raw, f"{path}={yaml_scalar(value)}")
            validate_config(trial_raw, source=f"{where}tune['{path}'] = {yaml_scalar(value)}")


# A choice of more values than this has only its smallest and largest numbers built before the first trial.
BUILT_CHOICES = 16


def build_model_ends(config: Config, dataset: Any, origin: str = "") -> None:
    """Every end of a `model.*` search space built into a model before the first trial: values the schema cannot
    judge (units: 10**20, a kernel larger than its input, an activation that does not exist) are one error line
    naming the tune path, instead of trials that all fail. The model's pre-build weight count refuses sizes beyond
    memory before any weight exists; no pretrained weights are loaded."""
    import keras

    from cnnctl.model.build import build_model

    where = f"{origin or 'config'}: "
    for path, space in config.tune.items():
        if not path.startswith("model."):
            continue
        values = list(space.values)
        if space.kind == "choice" and len(values) > BUILT_CHOICES:
            numbers = [value for value in values if isinstance(value, (int, float)) and not isinstance(value, bool)]
            values = [min(numbers), max(numbers)] if numbers else values[:BUILT_CHOICES]
        for value in values:
            trial = trial_config(config, {path: value})
            with in_config_file(f"{where}tune['{path}'] = {yaml_scalar(value)}"):
                build_model(
                    trial.model,
                    dataset.input_shape,
                    dataset.num_classes,
                    pixel_scale=dataset.pixel_scale,
                    full_scale=dataset.full_scale,
                    weights_missing_ok=True,
                    starting_weights=False,
                )
            keras.backend.clear_session()


def missing_path(raw: dict[str, Any], path: str) -> Optional[str]:
    """Why `path` names no value of the resolved config `raw` (with a spelling hint), or None when it does."""
    parts = key_path_parts(path)
    node: Any = raw
    for depth, part in enumerate(parts):
        here = dotted(parts[: depth + 1])
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                count = len(node) if isinstance(node, list) else 0
                return f"{here}: no such list entry (it has {count})"
            node = node[part]
            if isinstance(node, str):
                node = {node: {}}  # a bare layer name: its kwargs are empty
            continue
        if not isinstance(node, dict) or part not in node:
            keys = list(node) if isinstance(node, dict) else []
            hint = did_you_mean(str(part), keys) or (f"; it has {', '.join(map(str, keys))}" if keys else "")
            return (
                f"{here}: no such key in the config{hint} (a layer or optimizer argument must be written in "
                "the config before it can be tuned)"
            )
        node = node[part]
    if isinstance(node, (dict, list)):
        return f"{path}: is a whole section; tune one value inside it"
    return None


def yaml_scalar(value: Any) -> str:
    """A value as the YAML `apply_override` parses back to it (1e-05 is a string to YAML 1.1, 1.0e-05 a float)."""
    text = yaml.safe_dump(value, default_flow_style=True)
    return "\n".join(line for line in text.splitlines() if line != "...").strip()


def base_dict(config: Config) -> dict[str, Any]:
    raw = config.to_dict()
    raw.pop("tune", None)
    return raw


def trial_config(config: Config, params: dict[str, Any], split: Optional[str] = "val") -> Config:
    """The config with `params` ({path: value}) applied, `tune:` removed and evaluate.split set to `split`."""
    raw = base_dict(config)
    raw["evaluate"]["split"] = split
    for path, value in params.items():
        apply_override(raw, f"{path}={yaml_scalar(value)}")
    return validate_config(raw, source="tune")


def distributions(config: Config) -> dict[str, Any]:
    """Optuna's distribution for each `tune:` path."""
    found = {}
    for path, space in config.tune.items():
        low_high = space.values
        if space.kind == "choice":
            found[path] = optuna.distributions.CategoricalDistribution(space.values)
        elif space.kind == "int":
            found[path] = optuna.distributions.IntDistribution(*low_high)
        else:
            found[path] = optuna.distributions.FloatDistribution(*low_high, log=space.kind == "log_uniform")
    return found
