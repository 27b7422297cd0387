"""Config: the `data:` section — the source and its files, splits, labels, augmentation and mixing."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, BeforeValidator, Field, field_serializer, field_validator, model_validator

from cnnctl.config.layer_spec import LayerSpec, _parse_layer_list
from cnnctl.config.section import Section
from cnnctl.config.sources import ARRAYS_SOURCE, BUILTIN_SOURCES, FILE_SOURCES, registered_sources
from cnnctl.errors import did_you_mean


class FoldConfig(Section):
    """One fold of a stratified K-fold split of the training data; `cnnctl cv` sets it for each fold's run."""

    index: int = Field(ge=1, description="this fold (1..folds) is held out as the run's test split")
    folds: int = Field(ge=2, description="K")

    @model_validator(mode="after")
    def _index_in_range(self) -> "FoldConfig":
        if self.index > self.folds:
            raise ValueError(f"index must be 1..{self.folds} (got {self.index})")
        return self


def _square_size(value: Any) -> Any:
    return [value, value] if isinstance(value, int) else value


def _positive_size(value: Optional[tuple[int, int]]) -> Optional[tuple[int, int]]:
    if value is not None and min(value) <= 0:
        raise ValueError(f"must be two positive integers [height, width] (got {list(value)})")
    return value


# [height, width] of an image; a single number means a square.
ImageSize = Annotated[Optional[tuple[int, int]], BeforeValidator(_square_size), AfterValidator(_positive_size)]


def _positive_dimensions(value: Optional[list[int]], example: str) -> Optional[list[int]]:
    """A shape is positive sizes: a negative or zero one would reach numpy's reshape or Keras as a traceback."""
    if value is not None and (not value or min(value) <= 0):
        raise ValueError(f"must be a list of positive sizes, e.g. {example} (got {list(value)})")
    return value


class MixConfig(Section):
    """`data.mix`: MixUp and CutMix (Keras' layers) on training batches: two examples blended, or a patch of one
    pasted into the other, their labels mixed in the same proportion."""

    mixup: Optional[float] = Field(
        None, gt=0, le=100, description="MixUp's alpha: the blend weight is drawn from Beta(alpha, alpha), e.g. 0.2"
    )
    cutmix: Optional[float] = Field(
        None,
        gt=0,
        le=1,
        description="CutMix's alpha, at most 1 (Keras' CutMix): the kept area is drawn from Beta(alpha, alpha), "
        "e.g. 1.0",
    )

    @model_validator(mode="after")
    def _one_at_least(self) -> "MixConfig":
        if self.mixup is None and self.cutmix is None:
            raise ValueError("give mixup: ALPHA, cutmix: ALPHA or both, e.g. {mixup: 0.2}; or mix: false")
        return self


class DataConfig(Section):
    source: str = Field(
        "digits", description="a built-in or file source, one registered from Python, or `arrays` (from Python)"
    )
    path: Optional[str] = Field(
        None, description="npz | npy | idx | csv | folder | manifest; relative to the config file"
    )
    val_path: Optional[str] = Field(
        None,
        description="folder: a separate folder of class folders for the validation split (relative to the config file)",
    )
    test_path: Optional[str] = Field(
        None,
        description="folder: a separate folder of class folders for the test split "
        "(relative to the config file), e.g. a published set's val/",
    )
    image_size: ImageSize = Field(None, description="folder, manifest: resize target (height, width)")
    color_mode: Literal["grayscale", "rgb"] = Field("rgb", description="folder, manifest: channels after decoding")
    validation_split: float = Field(0.1, ge=0, lt=1, description="carved from train, stratified, seeded")
    test_split: Optional[float] = Field(None, gt=0, lt=1, description="carved first, when the source has no test set")
    normalize: bool = Field(True, description="scale pixel values to [0, 1]")
    label_column: Union[str, int] = Field("label", description="csv, manifest: name or index of the label column")
    file_column: str = Field("file", description="manifest: the column of file paths (relative to the manifest)")
    split_column: Optional[str] = Field(
        None, description="manifest: a column of train | val | test (empty: carved from train)"
    )
    multi_label: bool = Field(
        False,
        description="several labels per example: manifest labels written car|bicycle, or a 0/1 matrix y (N, K) in "
        "npz/npy/arrays; a sigmoid output layer, binary cross-entropy, a decision threshold per label",
    )
    label_separator: str = Field(
        "|", min_length=1, max_length=8, description="manifest: what separates an example's labels (multi_label)"
    )
    shape: Optional[list[int]] = Field(None, description="csv: shape of one example, e.g. [28, 28]")
    augment: list[LayerSpec] = Field(default_factory=list, description="keras preprocessing layers, training only")
    mix: Optional[MixConfig] = Field(
        None,
        description="{mixup: ALPHA, cutmix: ALPHA}: mix pairs of training images and their labels (2-D images; one "
        "of the two per batch when both are given); false (the default): none",
    )
    fold: Optional[FoldConfig] = Field(
        None, description="cv: {index, folds}: test on this fold of train (cnnctl cv sets it)"
    )

    @field_validator("augment", mode="before")
    @classmethod
    def _parse_augment(cls, value: Any) -> Any:
        return _parse_layer_list(value)

    @field_validator("mix", mode="before")
    @classmethod
    def _false_means_none(cls, value: Any) -> Any:
        return None if value is False else value

    @field_serializer("mix")
    def _none_means_false(self, value: Any) -> Any:
        return False if value is None else value

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        registered = [name for name in registered_sources() if name != ARRAYS_SOURCE]
        known = [*BUILTIN_SOURCES, *FILE_SOURCES, *registered]
        if value in known or value == ARRAYS_SOURCE:
            return value
        listed = ", ".join(f"'{name}'" for name in known[:-1]) + f" or '{known[-1]}'"
        hint = did_you_mean(value, known) or "; or register it from Python first: cnnctl.register_source(name, loader)"
        raise ValueError(f"must be one of {listed} (got {value}){hint}")

    @field_validator("shape")
    @classmethod
    def _positive_shape(cls, value: Optional[list[int]]) -> Optional[list[int]]:
        return _positive_dimensions(value, "[28, 28]")

    @model_validator(mode="after")
    def _path_when_needed(self) -> "DataConfig":
        if self.source in FILE_SOURCES and not self.path:
            raise ValueError(f"source '{self.source}' needs data.path (a file or folder)")
        if self.multi_label and self.source in ("folder", "idx", "csv", *BUILTIN_SOURCES):
            raise ValueError(
                f"multi_label: source {self.source} gives one label per example; several labels per example come as "
                "source: manifest (labels written car|bicycle) or npz/npy with a 0/1 matrix y of shape (N, K)"
            )
        for key in ("val_path", "test_path"):
            if getattr(self, key) is not None and self.source != "folder":
                raise ValueError(
                    f"{key} is for source folder (a separate folder of class folders); source "
                    f"'{self.source}' gives its splits itself"
                )
        return self
