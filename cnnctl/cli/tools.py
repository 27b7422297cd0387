"""Commands that need no trained run: `check`, `data`, `filter`, `schema`. Each is one call into `cnnctl.api`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cnnctl import api
from cnnctl.cli.base import ConfigArg, OverwriteOption, SetOption, app, overrides_of, user_errors
from cnnctl.errors import os_errors


@app.command()
@user_errors
def check(config: ConfigArg, overrides: SetOption = None) -> None:
    """Validate a config and build its model without training; print the layer table.

    Shows output shape, parameters, receptive field (size and jump) and FLOPs per layer.

    Example: cnnctl check configs/mnist.yaml --set model.layers[0].Conv2D.filters=16
    """
    from cnnctl.cli import console

    result = api.check(config, overrides_of(overrides))
    prepared = result.prepared
    if prepared.dataset.stand_in:
        console.warn(
            f"{prepared.dataset.stand_in}; checked against zero images of its shape and classes instead "
            "(`cnnctl train` needs the real data)"
        )
    else:
        console.console.print(console.data_table(prepared.dataset.summary()))
    for note in prepared.notes:  # the backbone's weights not downloaded, layers reused from a run
        console.warn(note)
    console.console.print(console.layer_table(result.layers, title=f"Model: {result.config.name}"))
    if prepared.fine_tune:
        console.say(
            f"phases: {result.config.train.epochs} epochs as above, {prepared.fine_tune.describe(result.config)}"
        )
    console.say(f"[green]ok[/]: {config} is valid")


@app.command()
@user_errors
@os_errors()  # disk full, a read-only folder, a name too long: one error line
def data(
    config: ConfigArg,
    overrides: SetOption = None,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", help="Sample grid PNG to write (default: <name>-samples.png here)", show_default=False),
    ] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Load and summarise a config's data without training, and draw a grid of labelled samples.

    Shows the source, example shape, dtype, value range, class counts per split and any skipped files.

    Example: cnnctl data configs/shapes_folder.yaml --out shapes.png
    """
    from cnnctl.cli import console

    summary, path = api.describe_data(config, out, overrides=overrides_of(overrides), overwrite=overwrite)
    console.data_overview(summary)
    console.say(f"samples: {path}")


@app.command("filter")
@user_errors
@os_errors()  # disk full, a read-only folder, a name too long: one error line
def filter_image(
    image: Annotated[Path, typer.Argument(help="A picture (PNG, JPEG, ...); used as grayscale", show_default=False)],
    kernel: Annotated[
        str,
        typer.Option(
            "--kernel", help="sharpen, edge, blur, emboss, or a kernel file (.npy, or .txt/.csv rows of numbers)"
        ),
    ] = "sharpen",
    pool: Annotated[int, typer.Option("--pool", help="Max-pooling window and stride, in pixels")] = 2,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out", help="PNG to write (default: <image stem>_filter.png in the current folder)", show_default=False
        ),
    ] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Show what one convolutional layer does to a picture: convolution with a kernel → ReLU → max-pooling.

    Example: cnnctl filter photo.jpg --kernel edge --pool 2
    """
    from cnnctl.cli import console

    result = api.filter_image(image, kernel=kernel, pool=pool, out=out, overwrite=overwrite)
    if result.note:
        console.warn(result.note)
    console.say(" → ".join(result.steps))
    console.say(str(result.path))


@app.command("schema")
@user_errors
def json_schema(
    out: Annotated[
        Optional[Path], typer.Option("--out", help="File to write (default: print it)", show_default=False)
    ] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Write the config's JSON Schema, so editors complete and check config files as you type.

    VS Code with the YAML extension (any yaml-language-server) reads it from a config's first line:
    `# yaml-language-server: $schema=cnnctl.schema.json` (a path relative to the config file).

    Example: cnnctl schema --out configs/cnnctl.schema.json
    """
    text = api.schema(out, overwrite=overwrite)
    if out is None:
        typer.echo(text, nl=False)
        return
    typer.echo(f"schema: {out}")
