"""The front door, tools that need no run: filter_image, schema, config_reference."""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from cnnctl import runtime
from cnnctl.errors import ConfigError
from cnnctl.runs.output import check_output_path, check_png_name, write_output_bytes, write_output_text

if TYPE_CHECKING:  # for annotations only: importing them would load pydantic, numpy or TensorFlow
    pass


from cnnctl.api.common import (
    PathLike,
    expect,
)

# ---------------------------------------------------------------- tools that need no run


@dataclass
class FilterResult:
    """`filter_image`: the PNG written, each panel's title (original → convolution → ReLU → pooled), a note about
    the picture (e.g. it had an alpha channel)."""

    path: Path
    steps: list[str]
    note: Optional[str] = None


def filter_image(
    image: PathLike, *, kernel: str = "sharpen", pool: int = 2, out: Optional[PathLike] = None, overwrite: bool = False
) -> FilterResult:
    """What one convolutional layer does to a picture: convolution with `kernel` (sharpen, edge, blur, emboss,
    or a .npy / .txt / .csv file of numbers) → ReLU → max-pooling by `pool`, drawn side by side.

    Args:
        image: a picture (PNG, JPEG, ...), used as grayscale.
        kernel: a kernel's name or file. Defaults to "sharpen".
        pool: the max-pooling window and stride, in pixels. Defaults to 2.
        out: the PNG. Defaults to `<image stem>_filter.png` in the current folder.
        overwrite: replace `out` if it is an existing regular file. Defaults to False.
    """
    from cnnctl.reporting import grids, plots
    from cnnctl.reporting.convolution_demo import convolution_steps, load_kernel, read_grayscale

    expect(image, (str, os.PathLike), "IMAGE", "a picture's path, e.g. filter_image('cat.jpg')")
    expect(kernel, (str, os.PathLike), "--kernel", "a kernel's name or file, e.g. --kernel sharpen")
    pool = int(expect(pool, (numbers.Integral,), "--pool", "a whole number of pixels, e.g. --pool 2"))
    out = Path(out) if out is not None else Path(f"{Path(image).stem}_filter.png")
    check_png_name(out)
    check_output_path(out, overwrite=overwrite, example=f"{Path(image).stem}_filter.png")
    name, weights = load_kernel(kernel)
    pixels, note = read_grayscale(image)
    panels = convolution_steps(pixels, weights, pool=pool, kernel_name=name)
    path = write_output_bytes(out, plots.png_bytes(grids.filter_demo_figure(panels)), overwrite=overwrite)
    return FilterResult(path, [title for title, _ in panels], note)


def config_reference() -> str:
    """The configuration reference as Markdown (docs/configuration-reference.md): every config key with its
    default, the values it takes and its description, written from the schema itself. The layer names are in
    `schema`'s JSON Schema instead."""
    from cnnctl.config.reference import config_reference_markdown

    return config_reference_markdown()


def schema(out: Optional[PathLike] = None, *, overwrite: bool = False) -> str:
    """The config's JSON Schema (every key, every keras.layers class with its arguments), for editors; written to
    `out` when given (an existing file only with `overwrite`). Returns the text."""
    if out is not None:
        check_output_path(out, overwrite=overwrite, example="cnnctl.schema.json")
    runtime.quiet_backend_import()  # quietly, before the layer names are read from Keras
    from cnnctl.model.json_schema import config_schema_text

    text = config_schema_text()
    if out is not None:
        try:
            write_output_text(out, text, overwrite=overwrite)
        except OSError as exc:
            raise ConfigError(
                f"--out {out}: cannot write the schema there ({exc.strerror or exc}); "
                "give a file path in a writable folder, e.g. --out cnnctl.schema.json"
            ) from None
    return text
