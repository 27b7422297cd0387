"""Run files checked as they are read (data.json, environment.json, metrics.json, cv_summary.json,
tune_summary.json): the types and ranges their readers rely on.

cnnctl writes them; a hand edit, another tool or a damaged disk can leave a class list that is a number,
a scale of NaN or zero, a duration of Infinity or a status that is a list. Every reader (predict, explain, export,
plot, report, runs, compare, resume) would then fail somewhere deep with a traceback, or go on with a wrong
number: here each is refused as it is read, by file and key. Keys this version does not know are left alone (a
newer cnnctl may add some), and every key may be missing (an older one wrote fewer).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cnnctl.errors import RunError, shown_path
from cnnctl.runs.contract import VERDICTS

# The most values one example may have (height × width × channels, or a volume's): 2**28 float32 values are
# 1 GiB per example, past any image or volume a CNN here trains on (an 8192 × 8192 RGB image is 2**27.6).
MAX_EXAMPLE_VALUES = 2**28


class _Facts(BaseModel):
    # strict: `true` is not the number 1 and "16" is not 16; floats must be finite.
    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)


class DataFacts(_Facts):
    """data.json (cnnctl.data.dataset.Dataset.summary)."""

    source: Optional[str] = None
    origin: Optional[str] = None
    input_shape: Optional[list[int]] = Field(None, min_length=1, max_length=4)
    dtype: Optional[str] = None
    value_range: Optional[list[float]] = Field(None, min_length=2, max_length=2)
    value_range_examples: Optional[int] = Field(None, ge=0)
    pixel_scale: Optional[float] = Field(None, gt=0)
    full_scale: Optional[float] = Field(None, gt=0)
    scaling: Optional[str] = None
    class_names: Optional[list[str]] = Field(None, min_length=1)
    num_classes: Optional[int] = Field(None, ge=1)
    multi_label: Optional[bool] = None
    sizes: Optional[dict[str, int]] = None
    counts: Optional[dict[str, dict[str, int]]] = None
    notes: Optional[list[str]] = None
    skipped: Optional[list[str]] = None

    @field_validator("input_shape")
    @classmethod
    def _a_shape(cls, shape: Optional[list[int]]) -> Optional[list[int]]:
        if shape is not None:
            if min(shape) < 1:
                raise ValueError(f"sizes must be at least 1 (got {shape})")
            if math.prod(shape) > MAX_EXAMPLE_VALUES:
                raise ValueError(
                    f"{math.prod(shape):,} values per example (got {shape}); at most {MAX_EXAMPLE_VALUES:,}"
                )
        return shape

    @field_validator("value_range")
    @classmethod
    def _a_range(cls, pair: Optional[list[float]]) -> Optional[list[float]]:
        if pair is not None and pair[0] > pair[1]:
            raise ValueError(f"the minimum comes first (got {pair})")
        return pair

    @field_validator("sizes")
    @classmethod
    def _counts(cls, sizes: Optional[dict[str, int]]) -> Optional[dict[str, int]]:
        if sizes is not None and any(size < 0 for size in sizes.values()):
            raise ValueError(f"sizes are counts of examples, 0 or more (got {sizes})")
        return sizes

    @model_validator(mode="after")
    def _one_name_per_class(self) -> "DataFacts":
        names, count = self.class_names, self.num_classes
        if names is not None and len(set(names)) != len(names):
            raise ValueError("class_names: a class is named twice")
        if names is not None and count is not None and len(names) != count:
            raise ValueError(f"class_names: {len(names)} names for num_classes {count}")
        return self


class EnvironmentFacts(_Facts):
    """environment.json (cnnctl.training.loop.write_run_start, cnnctl.runs.status.finish_run)."""

    status: Optional[str] = None
    backend: Optional[str] = None
    versions: Optional[dict[str, Optional[str]]] = None
    devices: Optional[list[str]] = None
    distribute: Optional[dict[str, Any]] = None
    precision: Optional[str] = None
    precision_reason: Optional[str] = None
    seed: Optional[int] = None
    started: Optional[str] = None
    started_unix: Optional[float] = None
    ended: Optional[str] = None
    epochs_run: Optional[int] = Field(None, ge=0)
    pid: Optional[int] = None
    phase_seconds: Optional[dict[str, float]] = None
    duration_s: Optional[float] = Field(None, ge=0)
    error: Optional[str] = None
    hint: Optional[str] = None
    signal: Optional[str] = None
    resumed: Optional[list[dict[str, Any]]] = None
    figures_error: Optional[str] = None


# A score from 0 to 1 (accuracy, F1, ROC-AUC, ...), or null where it does not apply.
Score = Optional[Annotated[float, Field(ge=0, le=1)]]


class DiagnosisFacts(_Facts):
    """metrics.json's diagnosis (cnnctl.evaluation.diagnosis): what the console, the report and the curves show.
    Its numbers are not checked: a diverged run's are NaN."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=True)

    verdict: Optional[Literal[VERDICTS]] = None  # type: ignore[valid-type]
    summary: Optional[str] = None
    advice: Optional[list[str]] = None
    notes: Optional[list[str]] = None


class CoverageFacts(_Facts):
    coverage: list[Annotated[float, Field(ge=0, le=1)]]
    accuracy: list[Annotated[float, Field(ge=0, le=1)]]
    threshold: Optional[list[float]] = None
    sentence: Optional[str] = None

    @model_validator(mode="after")
    def _paired(self) -> "CoverageFacts":
        if len(self.coverage) != len(self.accuracy):
            raise ValueError("coverage and accuracy must have one value each per threshold")
        return self


class MetricsFacts(_Facts):
    """metrics.json (cnnctl.evaluation.metrics): the scores every reader shows."""

    split: Optional[str] = None
    tta: Optional[str] = None
    accuracy: Score = None
    top_k_accuracy: Optional[dict[str, Score]] = None
    precision_macro: Score = None
    recall_macro: Score = None
    f1_macro: Score = None
    precision_weighted: Score = None
    recall_weighted: Score = None
    f1_weighted: Score = None
    roc_auc: Score = None
    num_examples: Optional[int] = Field(None, ge=0)
    per_class: Optional[dict[str, dict[str, Optional[float]]]] = None
    calibration: Optional[dict[str, Any]] = None
    coverage: Optional[CoverageFacts] = None
    diagnosis: Optional[DiagnosisFacts] = None

    @field_validator("top_k_accuracy")
    @classmethod
    def _ranks(cls, scores: Optional[dict[str, Score]]) -> Optional[dict[str, Score]]:
        if scores is not None and not all(key.isdigit() and int(key) >= 1 for key in scores):
            raise ValueError(f"its keys are ranks k = 1, 2, ... (got {', '.join(list(scores)[:5])})")
        return scores

    @field_validator("calibration")
    @classmethod
    def _bins(cls, calibration: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
        bins = (calibration or {}).get("bins", [])
        if not isinstance(bins, list) or not all(isinstance(row, dict) for row in bins):
            raise ValueError("bins must be a list of {lower, upper, count, accuracy, confidence}")
        return calibration


class CvSummaryFacts(_Facts):
    """cv_summary.json (cnnctl.workflows.crossval)."""

    status: Optional[str] = None
    folds: Optional[int] = Field(None, ge=2)
    folds_completed: Optional[int] = Field(None, ge=0)
    mean: Optional[dict[str, Score]] = None
    std: Optional[dict[str, Optional[Annotated[float, Field(ge=0)]]]] = None
    per_fold: Optional[list[dict[str, Any]]] = None


class TrialFacts(_Facts):
    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=True)  # a failed trial's value may be NaN

    number: Optional[int] = Field(None, ge=0)
    state: Optional[str] = None
    value: Optional[float] = None
    params: Optional[dict[str, Any]] = None


class TuneSummaryFacts(_Facts):
    """tune_summary.json (cnnctl.workflows.tune_summary)."""

    status: Optional[str] = None
    objective_name: Optional[str] = None
    trials: Optional[list[TrialFacts]] = None
    best: Optional[TrialFacts] = None


CHECKED = {
    "data.json": DataFacts,
    "environment.json": EnvironmentFacts,
    "metrics.json": MetricsFacts,
    "cv_summary.json": CvSummaryFacts,
    "tune_summary.json": TuneSummaryFacts,
}


def check_run_json(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """`data` as read from run file `path`, when its keys hold what cnnctl writes there; else RunError naming the
    first key that does not. Files other than data.json and environment.json pass unchecked."""
    facts = CHECKED.get(path.name)
    if facts is None:
        return data
    try:
        facts.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = re.sub(r" or instance of \w+", "", first["msg"].removeprefix("Value error, "))  # not our class names
        raise RunError(
            f"{path}: {f'{where}: ' if where else ''}{shown_path(message, limit=300)}; the file was edited or is not "
            "cnnctl's"
        ) from None
    return data
