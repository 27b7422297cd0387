"""Config: one entry of `tune:` — the values `cnnctl tune` tries for one config path."""

from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import (
    model_validator,
)

from cnnctl.config.section import Section
from cnnctl.errors import did_you_mean, printable

SEARCH_SPACE_KINDS = ("log_uniform", "uniform", "int", "choice")


MAX_CHOICES = 1000  # values of one `choice:`; each makes a config that is validated before the search starts


class SearchSpace(Section):
    """One entry of `tune:`: the values `cnnctl tune` tries for one config path, written `{kind: values}`:
    `{log_uniform: [1e-4, 1e-2]}`, `{uniform: [0.1, 0.5]}`, `{int: [16, 64]}` (both ends included) or
    `{choice: [16, 32, 64]}` (numbers, strings, booleans or null)."""

    kind: Literal["log_uniform", "uniform", "int", "choice"]
    values: list[Any]

    @model_validator(mode="before")
    @classmethod
    def _from_mapping(cls, value: Any) -> Any:
        if isinstance(value, SearchSpace):
            return value
        example = "e.g. {log_uniform: [1e-4, 1e-2]}, {uniform: [0.1, 0.5]}, {int: [16, 64]} or {choice: [16, 32]}"
        if not isinstance(value, dict) or len(value) != 1:
            raise ValueError(f"must be one search space, {example} (got {value!r})")
        ((kind, values),) = value.items()
        if kind not in SEARCH_SPACE_KINDS:
            hint = did_you_mean(str(kind), SEARCH_SPACE_KINDS) or f"; {example}"
            raise ValueError(f"unknown search space '{kind}': must be one of {', '.join(SEARCH_SPACE_KINDS)}{hint}")
        if kind == "choice":
            if not isinstance(values, list) or not values:
                raise ValueError(
                    f"choice: must be a non-empty list of values, e.g. {{choice: [16, 32, 64]}} (got {values!r})"
                )
            if len(values) > MAX_CHOICES:
                raise ValueError(
                    f"choice: {len(values):,} values; a choice holds at most {MAX_CHOICES} (every one is checked "
                    "before the first trial): for a range use {int: [low, high]} or {uniform: [low, high]}"
                )
            if any(isinstance(item, (list, dict)) for item in values):
                raise ValueError(
                    f"choice: every value must be a number, string, boolean or null (got {values!r}); "
                    "tune a list's entries one path at a time, e.g. model.layers[0].Conv2D.kernel_size"
                )
            return {"kind": kind, "values": values}
        if isinstance(values, list):  # YAML 1.1 reads 1e-4 (no dot) as a string; the rest of the config takes it
            values = [_number_written_as_text(item) for item in values]
        numbers = (
            isinstance(values, list)
            and len(values) == 2
            and all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in values)
        )
        if not numbers:
            raise ValueError(f"{kind}: must be two numbers [low, high], e.g. {{{kind}: [1, 10]}} (got {values!r})")
        low, high = values
        if not low < high:
            raise ValueError(f"{kind}: low must be below high (got [{low}, {high}])")
        if kind == "log_uniform" and low <= 0:
            raise ValueError(f"log_uniform: both ends must be positive (got [{low}, {high}]); use uniform for 0")
        if kind == "int" and not all(float(item).is_integer() for item in values):
            raise ValueError(f"int: both ends must be whole numbers (got [{low}, {high}])")
        return {"kind": kind, "values": [int(low), int(high)] if kind == "int" else [float(low), float(high)]}

    def to_yaml(self) -> dict[str, list]:
        return {self.kind: list(self.values)}


_WHOLE_KEY_PATH = re.compile(r"[^.\[\]\s][^.\[\]]*(?:\.[^.\[\]\s][^.\[\]]*|\[\d+\])*")


_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _number_written_as_text(item: Any) -> Any:
    """`1e-4` as the float it means; anything else as it is."""
    if isinstance(item, str) and _NUMBER_TEXT.fullmatch(item.strip()):
        number = float(item)
        return int(number) if number.is_integer() and "e" not in item.lower() and "." not in item else number
    return item


def key_path_problem(key: str) -> Optional[str]:
    """Why `key` is not a config path such as `model.layers[0].Conv2D.filters` (an empty name between dots, a
    stray bracket), or None when it is one."""
    if _WHOLE_KEY_PATH.fullmatch(key):
        return None
    return (
        f"'{printable(key[:80])}' is not a config path (names joined by dots, list positions in brackets), e.g. "
        "train.epochs or model.layers[0].Conv2D.filters"
    )
