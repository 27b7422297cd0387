"""Hostile inputs end in one `error:` line within seconds, never a hang, a crash or a machine out of memory:
alias bombs, deep nesting, recursive aliases and oversize YAML; named pipes and /dev/zero wherever a file is
read; layers that would read a file. Each case runs in a subprocess with a timeout, so a regression fails
instead of hanging the test run."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes and /dev/zero are POSIX")

TIMEOUT = 120  # seconds of wall clock: catches a hang, however busy the machine
CPU_SECONDS = 30  # of the child's CPU time: every case takes a few (most of it Python and TensorFlow starting)
LAYERS = "model: {layers: [Flatten, {Dense: {units: 2, activation: softmax}}]}\n"


def run(*args: str, cwd: Path) -> tuple[int, str, float]:
    """(exit code, stderr, the child's CPU seconds): CPU time, not wall clock, so a loaded machine cannot fail it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done.returncode, done.stderr, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def check(config: str, cwd: Path) -> str:
    """`cnnctl check config` → its one error line (asserting exit code 2 and nothing else on stderr)."""
    code, stderr, seconds = run("-m", "cnnctl", "check", config, cwd=cwd)
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2, stderr[-2000:]
    assert len(errors) == 1 and len(errors[0]) < 1500, stderr[-2000:]
    assert seconds < CPU_SECONDS
    return errors[0]


def alias_bomb() -> str:
    """~600 bytes that stand for 9**9 ≈ 387 million strings once every alias is expanded."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "\n".join(lines) + "\nmodel: {layers: [{Dense: {units: *l8}}]}\n"


YAML_CASES = [
    ("bomb", alias_bomb(), "more than 200,000 values once aliases are expanded"),
    (
        "bomb-in-layer",
        "model: {layers: [{Dense: {units: [&y [&x [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "  # Keras echoes
        + "*x, " * 9
        + "], *y, *y, *y, *y]}}]}\n",
        "model.layers[0] (Dense): ",
    ),  # the value
    ("deep", "a: " + "[" * 20_000 + "]" * 20_000 + "\n", "nested deeper than 100 levels"),
    (
        "deep-through-aliases",
        "x: &x " + "[" * 60 + "]" * 60 + "\ny: " + "[" * 45 + "*x" + "]" * 45 + "\n",
        "nested deeper than 100 levels (aliases expanded)",
    ),
    ("recursive", "a: &a [1, *a]\n" + LAYERS, "the alias *a is inside the node &a it names"),
    ("recursive-mapping", "a: &a {b: {c: *a}}\n" + LAYERS, "(a recursive alias)"),
    ("oversize", "# padding\n" * 120_000 + LAYERS, "over the limit of 1,048,576 for a config file"),
]


@pytest.mark.parametrize("name, text, expected", YAML_CASES, ids=[case[0] for case in YAML_CASES])
def test_hostile_yaml_is_one_error_line(name, text, expected, tmp_path):
    (tmp_path / "c.yaml").write_text(text)
    assert expected in check("c.yaml", tmp_path)


def test_a_layer_reading_a_file_is_refused(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "data: {source: digits}\nmodel: {layers: [{StringLookup: {vocabulary: /dev/zero}}, Flatten, "
        "{Dense: {units: 10, activation: softmax}}]}\n"
    )
    assert check("c.yaml", tmp_path) == (
        "error: c.yaml: model.layers[0] (StringLookup): vocabulary: a file path is refused (got '/dev/zero'): "
        "configs must not read files; give the vocabulary as a list, e.g. vocabulary: [cat, dog]"
    )


def test_a_named_pipe_as_config_is_refused_not_read(tmp_path):
    os.mkfifo(tmp_path / "c.yaml")
    assert check("c.yaml", tmp_path) == (
        "error: c.yaml: is a named pipe (FIFO), not a regular file; give a YAML config file such as configs/digits.yaml"
    )


@pytest.mark.parametrize("source, target", [("npz", "data.npz"), ("csv", "data.csv"), ("npz", "npys/x_train.npy")])
def test_a_named_pipe_as_data_is_refused_not_read(source, target, tmp_path):
    (tmp_path / "npys").mkdir()
    os.mkfifo(tmp_path / target)
    path = "npys" if target.startswith("npys") else target
    script = (
        "from cnnctl.config.schema import DataConfig; from cnnctl.data import files; from cnnctl.errors "
        f"import DataError\ntry: files.load_{source}(DataConfig(source='{source}', path='{path}'))\n"
        "except DataError as exc: print(exc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert done.stdout.strip() == f"data.path: {target} is a named pipe (FIFO), not a regular file", done.stderr


def test_a_link_to_dev_zero_and_a_pipe_in_a_class_folder_are_skipped_with_reasons(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / "images" / name).mkdir(parents=True)
        Image.fromarray(np.full((4, 4, 3), 80, np.uint8)).save(tmp_path / "images" / name / "1.png")
    (tmp_path / "images" / "cat" / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "images" / "dog" / "pipe.png")
    (tmp_path / "images" / "dog" / "pagemap.png").symlink_to("/proc/self/pagemap")  # "regular", and endless
    script = (
        "from cnnctl.config.schema import DataConfig; from cnnctl.data.folders import load_folder; "
        "raw = load_folder(DataConfig(source='folder', path='images')); "
        "print(len(raw.x_train)); print(*raw.skipped, sep='\\n')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "2",
        "cat/zero.png (is a device)",
        "dog/pagemap.png (is a file of the kernel's /proc)",
        "dog/pipe.png (is a named pipe (FIFO))",
    ]


def test_a_named_pipe_given_to_predict_is_refused(tmp_path):
    os.mkfifo(tmp_path / "x.npz")
    os.mkfifo(tmp_path / "x.png")
    script = (
        "from cnnctl.evaluation.predict import Preprocessing, load_inputs\n"
        "from cnnctl.errors import DataError\n"
        "p = Preprocessing((8, 8, 1), 16.0, 16.0, ['a', 'b'], (0.0, 16.0), None, 32)\n"
        "for path in ('x.npz', 'x.png'):\n"
        "    try:\n"
        "        load_inputs([path], p)\n"
        "    except DataError as exc:\n"
        "        print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert done.stdout.splitlines() == [
        f"INPUT {name}: is a named pipe (FIFO), not a regular file; give an image file, a folder or an .npz file"
        for name in ("x.npz", "x.png")
    ], done.stderr[-2000:]


def test_an_image_over_the_pixel_limit_is_skipped_before_decoding(tmp_path):
    from cnnctl.data.limits import MAX_IMAGE_PIXELS, image_problem

    side = int(MAX_IMAGE_PIXELS**0.5) + 1
    Image.new("1", (side, side)).save(tmp_path / "huge.png")  # a few kilobytes on disk, 67 megapixels decoded
    assert (tmp_path / "huge.png").stat().st_size < 100_000
    assert image_problem(tmp_path / "huge.png") == (
        f"too large: {side}×{side} pixels, over the limit of {MAX_IMAGE_PIXELS:,}"
    )
    assert image_problem("/dev/zero") == "is a device"
