"""Config: the base of every section — unknown keys refused, values checked when assigned, no inf or NaN."""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
)

MAX_COUNT = 2**31 - 1  # the largest epoch or batch count TensorFlow's 32-bit counters hold


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
