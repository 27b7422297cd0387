"""Reporting: grids of examples and of what a network holds — data samples, misclassified examples, learned
filters, feature maps, and the convolution → ReLU → pooling demonstration of `cnnctl filter`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
from matplotlib.figure import Figure

from cnnctl.reporting.plots import (
    DIVERGING_CMAP,
    PANEL_TITLE_CHAR,
    SEQUENTIAL_CMAP,
    grid_figure,
    message_figure,
    new_figure,
    normalize_values,
    symmetric_limit,
)


def example_grid(
    examples: Union[np.ndarray, Sequence[np.ndarray]],
    titles: Optional[Sequence[str]] = None,
    colors: Optional[Sequence[str]] = None,
    ncols: int = 8,
    kind: str = "auto",
    title: Optional[str] = None,
) -> Figure:
    """Show examples in a grid: images, 1-D signals, or the middle slice of 3-D volumes.

    Used for the misclassified examples (titles like "true: 3\\npred: 8 (0.97)", red) and data samples.
    Each image is scaled to its own min..max so faint and bright ones are equally visible.

    Args:
        examples: (N, ...) array or a list of arrays, one per example, each shaped
            (H, W), (H, W, 1|3) image; (L,) or (L, C) signal; (D, H, W[, C]) volume.
        titles: one title per example. Defaults to None (no titles).
        colors: one title colour per example. Defaults to None (black).
        ncols: examples per row. Defaults to 8.
        kind: "image", "signal", "volume", or "auto" to guess from the shape: 2-D arrays are signals when
            they are long and have at most 16 channels, 3-D arrays are images when they have at most 4
            channels. Defaults to "auto".
        title: a title over the whole grid. Defaults to None.
    """
    examples = [np.asarray(example) for example in examples]
    count = len(examples)
    if count == 0:
        return message_figure("no examples", title)
    for name, values in (("titles", titles), ("colors", colors)):
        if values is not None and len(values) != count:
            raise ValueError(f"{name} must have one entry per example ({count}). Received {len(values)}")
    if kind not in ("auto", "image", "signal", "volume"):
        raise ValueError(f"kind must be 'auto', 'image', 'signal' or 'volume'. Received: {kind!r}")

    ncols = max(1, min(ncols, count))
    nrows = math.ceil(count / ncols)
    title_rows = [str(text).split("\n") for text in titles] if titles else []
    title_lines = max(map(len, title_rows), default=0)
    # Wide enough for the longest title line (8-point text), so neighbouring titles do not overlap; capped, so
    # very long class names make a readable figure whose titles may touch rather than a huge one.
    longest = max((len(line) for rows in title_rows for line in rows), default=0)
    panel_width = min(3.0, max(1.35, PANEL_TITLE_CHAR * longest))
    fig, axes, _ = grid_figure(nrows, ncols, panel_width, 1.35, title_lines, title)
    for index, ax in enumerate(axes):
        if index >= count:
            ax.set_axis_off()
            continue
        draw_example(ax, examples[index], kind)
        if titles is not None:
            ax.set_title(str(titles[index]), fontsize=8, color=colors[index] if colors is not None else "black")
    if title:
        fig.suptitle(title)
    return fig


def filters_figure(kernel: np.ndarray, max_filters: int = 64) -> Figure:
    """Show the first convolution layer's filters, one panel per output filter, titled with its index.

    Every panel shares one colour scale, symmetric around zero (-m..+m, m the largest |value| drawn across
    all the layer's filters), so a weight's sign and size read the same in every panel, with a colour bar.
    Conv2D kernels (kh, kw, in, out) are drawn as images on a diverging map (red positive, blue negative),
    averaged over the input channels unless in == 3 (RGB input): those are drawn in colour, each channel
    scaled by the same m, so zero is mid-gray. Conv1D kernels (k, in, out) are drawn as bars of the weights
    averaged over the input channels, or as one line per input channel when there are 2 or 3, on the same
    -m..+m axis. Conv3D kernels show their middle depth slice.

    Args:
        kernel: the layer's kernel weights.
        max_filters: draw at most this many (the first ones). Defaults to 64.
    """
    kernel = np.asarray(kernel, dtype=float)
    if kernel.ndim == 5:
        kernel = kernel[kernel.shape[0] // 2]
    if kernel.ndim not in (3, 4):
        raise ValueError(
            f"kernel must be (kh, kw, in, out) for Conv2D or (k, in, out) for Conv1D. Received shape: {kernel.shape}"
        )
    total = kernel.shape[-1]
    shown = min(total, max_filters)
    ncols = max(1, min(8, shown))
    nrows = max(1, math.ceil(shown / ncols))
    in_channels = kernel.shape[-2]
    rgb = kernel.ndim == 4 and in_channels == 3
    one_line_per_channel = kernel.ndim == 3 and in_channels in (2, 3)
    has_colorbar = kernel.ndim == 4 and not rgb
    drawn = kernel if rgb or one_line_per_channel else kernel.mean(axis=-2)
    limit = symmetric_limit(drawn)
    size = "×".join(str(dim) for dim in kernel.shape[:-1])
    # Without a colour bar (RGB kernels, Conv1D bars) the title carries the shared scale.
    scale = "" if has_colorbar else f", shared scale ±{limit:.3g}" + (" (gray = 0)" if rgb else "")
    title = (
        f"First conv layer: {total} filters of {size}" + (f" (first {shown} shown)" if shown < total else "") + scale
    )
    fig, axes, colorbar_axes = grid_figure(nrows, ncols, 1.15, 1.15, 1, title, colorbar=has_colorbar)
    image = None
    for index, ax in enumerate(axes):
        if index >= shown:
            ax.set_axis_off()
            continue
        weights = drawn[..., index]
        if kernel.ndim == 4:
            if rgb:
                ax.imshow(np.clip(0.5 + weights / (2 * limit), 0, 1), interpolation="nearest")
            else:
                image = ax.imshow(weights, cmap=DIVERGING_CMAP, vmin=-limit, vmax=limit, interpolation="nearest")
            ax.set_axis_off()
        else:
            ax.axhline(0, color="gray", lw=0.5)
            if one_line_per_channel:
                ax.plot(weights, lw=1)
            else:
                ax.bar(np.arange(len(weights)), weights, color=np.where(weights >= 0, "tab:red", "tab:blue"))
            ax.set_ylim(-1.05 * limit, 1.05 * limit)
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(str(index), fontsize=8)
    if image is not None:
        averaged = f", mean of {in_channels} input channels" if in_channels > 1 else ""
        fig.colorbar(image, cax=colorbar_axes, label=f"weight{averaged}")
    fig.suptitle(title)
    return fig


def feature_maps_figure(activations: Sequence[tuple[str, np.ndarray]], max_channels: int = 16) -> Figure:
    """Show what each layer outputs for one example: one row per layer, up to `max_channels` channels.

    Each row is labelled with the layer name and the activation's shape. (H, W, C) maps are drawn as
    images, (L, C) as lines, (units,) vectors as one bar chart, (D, H, W, C) as their middle slice.
    All channels of a layer share one scale (see `activation_scale`), so a faint channel looks faint and
    a dead one blank: image rows get a colour bar, line and bar rows a "range" note under their label.

    Args:
        activations: (layer name, activation of one example without the batch axis) pairs, in layer order.
        max_channels: channels shown per layer (the first ones). Defaults to 16.
    """
    if not activations:
        return message_figure("no activations")
    rows = []
    for name, activation in activations:
        activation = np.asarray(activation, dtype=float)
        shape = activation.shape
        if activation.ndim == 4:
            activation = activation[activation.shape[0] // 2]
        if activation.ndim not in (1, 2, 3):
            raise ValueError(
                f"activation of layer {name!r} must be (H, W, C), (L, C) or (units,). Received shape: {shape}"
            )
        panels = 1 if activation.ndim == 1 else min(activation.shape[-1], max_channels)
        rows.append((name, shape, activation, panels))

    ncols = max(panels for _, _, _, panels in rows)
    fig = new_figure(1.1 * ncols + 2.0, 1.15 * len(rows) + 0.3)
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for row, (name, shape, activation, panels) in enumerate(rows):
        cmap, low, high = activation_scale(activation)
        image = None
        for channel in range(ncols):
            ax = axes[row, channel]
            if channel >= panels:
                ax.set_axis_off()
                continue
            margin = 0.05 * (high - low)
            if activation.ndim == 1:
                ax.bar(np.arange(len(activation)), activation, width=1.0)
                ax.set_ylim(low - margin, high + margin)
            elif activation.ndim == 2:
                ax.plot(activation[:, channel], lw=0.8)
                ax.margins(x=0)
                ax.set_ylim(low - margin, high + margin)
            else:
                image = ax.imshow(activation[..., channel], cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
            # Ticks off but the frame kept: hiding the axis would hide the row label too.
            ax.set_xticks([])
            ax.set_yticks([])
            if activation.ndim > 1:
                ax.set_title(str(channel), fontsize=7)
        total = 1 if activation.ndim == 1 else activation.shape[-1]
        channels = f"\n{panels} of {total} ch." if panels < total else ""
        scale = "" if image is not None else f"\nrange {low:.3g} … {high:.3g}"
        axes[row, 0].set_ylabel(
            f"{name}\n{tuple(shape)}{channels}{scale}", rotation=0, ha="right", va="center", fontsize=8
        )
        if image is not None:
            colorbar = fig.colorbar(image, ax=axes[row, :].tolist(), fraction=0.02, aspect=6, pad=0.01)
            colorbar.ax.tick_params(labelsize=6)
    return fig


def activation_scale(activation: np.ndarray) -> tuple[str, float, float]:
    """(colour map, vmin, vmax) shared by every channel of one layer's activation.

    Never-negative outputs (ReLU, pooling of them, pixels) go from 0 to the layer's maximum on a sequential
    map, so zero is the darkest colour; outputs with negative values go on a diverging map centred at zero,
    from -m to +m with m the largest |value|. A layer of zeros gets 0..1.
    """
    values = np.asarray(activation, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() < 0:
        limit = symmetric_limit(finite)
        return DIVERGING_CMAP, -limit, limit
    high = float(finite.max()) if finite.size else 0.0
    return SEQUENTIAL_CMAP, 0.0, high if high > 0 else 1.0


def filter_demo_figure(panels: Sequence[tuple[str, np.ndarray]]) -> Figure:
    """Show 2-D images side by side with their titles and sizes (original → convolution → ReLU → pooled).

    Each panel is scaled to its own 1st..99th percentile, so negative convolution outputs show dark rather
    than clipped, and a few extreme pixels (the zero-padded border of a sharpened image) cannot wash the
    rest out to flat gray; drawn without smoothing, so pooling's coarser grid is visible.

    Args:
        panels: (title, image) pairs; images (H, W), (H, W, 1) or (H, W, 3).
    """
    if not panels:
        return message_figure("no images")
    fig = new_figure(3.0 * len(panels), 3.4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, image) in zip(axes, panels):
        image = np.asarray(image, dtype=float)
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        if image.ndim == 2:
            low, high = np.percentile(image, [1, 99]) if image.size else (0.0, 1.0)
            ax.imshow(image, cmap="gray", interpolation="nearest", vmin=low, vmax=max(high, low + 1e-12))
        elif image.ndim == 3 and image.shape[-1] == 3:
            ax.imshow(normalize_values(image), interpolation="nearest")
        else:
            raise ValueError(f"panel {title!r} must be an (H, W) or (H, W, 1|3) image. Received shape: {image.shape}")
        ax.set_title(title)
        ax.set_xlabel(f"{image.shape[0]} × {image.shape[1]}")
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def draw_example(ax, example: np.ndarray, kind: str) -> None:
    if kind == "auto":
        kind = example_kind(example)
    if kind == "volume":
        example = example[example.shape[0] // 2]
        kind = "image"
    if kind == "signal":
        ax.plot(example.reshape(len(example), -1), lw=0.8)
        ax.margins(x=0)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    ax.set_axis_off()
    if example.ndim == 3 and example.shape[-1] == 1:
        example = example[..., 0]
    if example.ndim == 3:
        if example.shape[-1] in (3, 4):
            # RGB, or RGBA with alpha dropped; the channels are scaled together so hue survives.
            ax.imshow(normalize_values(example[..., :3]), interpolation="nearest")
            return
        example = example.mean(axis=-1)
    if example.ndim != 2:
        raise ValueError(f"cannot show an example of shape {example.shape} as an image")
    ax.imshow(normalize_values(example), cmap="gray", vmin=0, vmax=1, interpolation="nearest")


def example_kind(example: np.ndarray) -> str:
    shape = example.shape
    if example.ndim == 1:
        return "signal"
    if example.ndim == 2:
        return "signal" if shape[1] <= 16 and shape[0] >= 4 * shape[1] else "image"
    if example.ndim == 3:
        return "image" if shape[-1] <= 4 else "volume"
    if example.ndim == 4:
        return "volume"
    raise ValueError(f"examples must be 1-D to 4-D (signal, image or volume). Received shape: {shape}")


# Grids of small panels (filters, examples) are laid out by fixed margins in inches instead of constrained
# layout, which measures every panel's title and ticks at each save: 1.5-2 s of a 32-panel grid's 2.5 s.
