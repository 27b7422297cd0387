"""More hostile inputs, each one `error:` line (exit code 2, no traceback) within seconds, and nothing already
written changed: out-of-range seeds and shapes, crafted .npz/.npy/IDX headers, non-UTF-8 CSVs and file names,
dangling symlinks and symlink loops, names of 300 characters, a class folder with a newline in its name,
--out a folder, a full disk and a read-only run folder while evaluate/plot/report/predict write; and NaN
inputs to predict, which get a warning and NaN probabilities instead of normal-looking ones.

The hostile inputs are built inside each test. Cases that need a trained run use the session's tiny digits run
(tests/conftest.py); cases that would write into it use a private copy and compare every byte before and after.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnnctl.cli.app import app

runner = CliRunner()

# CPU seconds of this process (time.process_time: every thread's, not the wall clock a busy machine stretches): each
# case takes well under one once TensorFlow is imported; this only catches a runaway.
SECONDS = 60
LAYERS = "model: {layers: [Flatten, {Dense: {units: 2, activation: softmax}}]}\n"


def one_error(*args: object) -> str:
    """Run the CLI in-process → its one `error:` line, asserting exit code 2, no traceback and a bounded time."""
    start = time.process_time()
    result = runner.invoke(app, [str(arg) for arg in args])
    seconds = time.process_time() - start
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2, result.output[-3000:]
    assert "Traceback" not in result.output
    assert len(errors) == 1, result.output[-3000:]
    assert result.output.rstrip().endswith(errors[0]), "the error must be the last line, whole"
    assert seconds < SECONDS
    return errors[0]


def digest(folder: Path) -> dict[str, str]:
    """Every file below `folder` (temporary files included) → its SHA-256."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def fsname(folder: Path, name: bytes) -> Path:
    """A path whose last name holds raw bytes (not UTF-8), as a file copied from another system can."""
    return Path(os.fsdecode(os.fsencode(folder) + b"/" + name))


def image(path: Path, value: int = 80) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path, format="PNG")
    return path


def npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    """An .npy file of 128 bytes whose header claims `shape`: no data follows."""
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape!r}, }}"
    header = header.ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin-1")


def crafted_npz(path: Path, **members: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(f"{name}.npy", content)
    return path


# ---------------------------------------------------------------- config values and data files (`cnnctl check`)


def _idx_folder(root: Path, images_file: bytes) -> str:
    (root / "idx").mkdir()
    (root / "idx" / "train-images-idx3-ubyte").write_bytes(images_file)
    (root / "idx" / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + (2).to_bytes(4, "big") + b"\0\1")
    return "data: {source: idx, path: idx}\n"


CHECK_CASES = [
    ("seed-negative", lambda root: "seed: -1\n", "seed: must be greater than or equal to 0 (got -1)"),
    ("seed-huge", lambda root: f"seed: {2**70}\n", f"seed: must be less than or equal to 4294967295 (got {2**70})"),
    (
        "input-shape-negative",
        lambda root: "model: {input_shape: [-8, 8, 1], layers: [Flatten, Dense: {units: 2}]}\n",
        "model.input_shape: must be a list of positive sizes, e.g. [28, 28, 1] (got [-8, 8, 1])",
    ),
    (
        "data-shape-negative",
        lambda root: (
            (root / "d.csv").write_text("label,a,b,c,d\n0,1,2,3,4\n1,1,2,3,4\n"),
            "data: {source: csv, path: d.csv, shape: [-2, -2]}\n",
        )[1],
        "data.shape: must be a list of positive sizes, e.g. [28, 28] (got [-2, -2])",
    ),
    (
        "csv-not-utf8",
        lambda root: (
            (root / "d.csv").write_bytes(b"label,a,b\n0,1,2\n1,caf\xe9,3\n"),
            "data: {source: csv, path: d.csv}\n",
        )[1],
        "data.path: {d}/d.csv: line 3 is not UTF-8 text (byte 0xe9 at column 6); save the file as UTF-8 "
        '(e.g. "CSV UTF-8" in a spreadsheet)',
    ),
    (
        "npz-member-not-npy",
        lambda root: (
            crafted_npz(root / "d.npz", x_train=b"hello, not an array", y_train=b""),
            "data: {source: npz, path: d.npz}\n",
        )[1],
        "data.path: {d}/d.npz: member x_train.npy is not .npy data (the magic string is not correct; expected "
        "b'\\x93NUMPY', got b'hello,')",
    ),
    (
        "npz-absurd-shape",
        lambda root: (
            crafted_npz(root / "d.npz", x_train=npy_header((10**11, 10**5, 10**5)), y_train=npy_header((0,))),
            "data: {source: npz, path: d.npz}\n",
        )[1],
        "data.path: {d}/d.npz: member x_train.npy claims shape [100000000000, 100000, 100000] of float32 "
        "(4,000,000,000,000,000,000,000 bytes) but holds only 128 bytes",
    ),
    (
        "npz-cut-short",  # numpy saw the zip's first bytes and zipfile raised BadZipFile, a traceback
        lambda root: (
            np.savez(root / "whole.npz", x_train=np.zeros((20, 4, 4)), y_train=np.arange(20) % 2),
            (root / "d.npz").write_bytes((root / "whole.npz").read_bytes()[:900]),
            "data: {source: npz, path: d.npz}\n",
        )[2],
        "data.path: {d}/d.npz: not a readable .npz file (File is not a zip file)",
    ),
    (
        "npz-that-is-one-npy",
        lambda root: ((root / "d.npz").write_bytes(npy_header((0,))), "data: {source: npz, path: d.npz}\n")[1],
        "data.path: {d}/d.npz: is one .npy array, not an .npz archive of named arrays; save it with "
        "numpy.savez(path, x=...)",
    ),
    (
        "npy-folder-absurd-shape",
        lambda root: (
            (root / "npy").mkdir(),
            (root / "npy" / "x_train.npy").write_bytes(npy_header((2**40, 2**40))),
            "data: {source: npy, path: npy}\n",
        )[2],
        "data.path: {d}/npy/x_train.npy claims shape [1099511627776, 1099511627776] of float32 "
        "(4,835,703,278,458,516,698,824,704 bytes) but holds only 128 bytes",
    ),
    (
        "idx-header-overflows",
        lambda root: _idx_folder(root, bytes([0, 0, 0x0E, 4]) + b"\x00\x01\x00\x00" * 4),
        "{d}/idx/train-images-idx3-ubyte: its header claims [65536, 65536, 65536, 65536] (137,438,953,472.0 GiB), "
        "more than this machine's {memory} GiB of memory",
    ),
    (
        "idx-header-past-the-end",
        lambda root: _idx_folder(root, bytes([0, 0, 8, 255]) + b"\x00\x00\x00\x02" * 3),
        "{d}/idx/train-images-idx3-ubyte: not an IDX file: its header claims 255 dimensions and is cut short",
    ),
]


# Typed YAML scalars PyYAML cannot build raise ValueError (KeyError for `!!bool`) from deep inside it.
CHECK_CASES += [
    (f"yaml-{name}", lambda root, value=value: f"seed: {value}\n", expected)
    for name, value, expected in (
        (
            "int-tag",
            "!!int abc",
            "line 1, column 7: invalid YAML: 'abc' is not a valid int (invalid literal for int() with base 10: 'abc')",
        ),
        (
            "float-tag",
            "!!float abc",
            "line 1, column 7: invalid YAML: 'abc' is not a valid float (could not convert string to float: 'abc')",
        ),
        ("bool-tag", "!!bool maybe", "line 1, column 7: invalid YAML: 'maybe' is not a valid bool (true or false)"),
        (
            "timestamp",
            "!!timestamp 2020-13-45",
            "line 1, column 7: invalid YAML: '2020-13-45' is not a valid timestamp (month must be in 1..12)",
        ),
        (
            "5000-digits",
            "9" * 5000,
            "line 1, column 7: invalid YAML: '" + "9" * 40 + "...' is not a valid int "
            "(Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits)",
        ),
    )
]


# What train would refuse or crash on later, refused by check (issue 30, part 4).
DENSE = "{Dense: {units: 2, activation: softmax}}"
CHECK_CASES += [
    (
        "3000-layers",
        lambda root: "model: {layers: [Flatten, " + ", ".join(["{Dense: {units: 4}}"] * 3000) + f", {DENSE}]}}\n",
        "model.layers: 3,002 layers; a config lists at most 500 (a deeper network, ResNet or EfficientNet, comes as "
        "model.backbone)",
    ),
    (
        "choice-of-2000",
        lambda root: "tune: {train.batch_size: {choice: [" + ", ".join(map(str, range(1, 2001))) + "]}}\n",
        "tune['train.batch_size']: choice: 2,000 values; a choice holds at most 1000 (every one is checked before "
        "the first trial): for a range use {{int: [low, high]}} or {{uniform: [low, high]}}",
    ),
    (
        "tune-path-with-empty-name",
        lambda root: "tune: {train..epochs: {choice: [1, 2]}}\n",
        "tune: 'train..epochs' is not a config path (names joined by dots, list positions in brackets), e.g. "
        "train.epochs or model.layers[0].Conv2D.filters",
    ),
    (
        "npz-splits-of-two-shapes",
        lambda root: (
            np.savez(
                root / "d.npz",
                x_train=np.zeros((20, 8, 8), np.uint8),
                y_train=np.arange(20) % 2,
                x_test=np.zeros((4, 9, 9), np.uint8),
                y_test=np.arange(4) % 2,
            ),
            "data: {source: npz, path: d.npz}\n",
        )[1],
        "data: x_test holds examples of shape [9, 9] but x_train's are [8, 8]; every split must hold examples of "
        "one shape",
    ),
]


@pytest.mark.parametrize(
    "override, expected",
    [
        (
            "train.optimizer={name: adam, name: sgd}",
            "'name' appears twice in the same mapping (first on line 1); keep one",
        ),
        ("train..epochs=3", "'train..epochs' is not a config path"),
    ],
)
def test_a_set_that_is_not_one_clear_value_is_one_line(tmp_path, override, expected):
    config = tmp_path / "c.yaml"
    config.write_text(LAYERS)
    assert one_error("check", config, "--set", override).startswith(f"error: --set {override}: {expected}")


def test_a_keras_backend_cnnctl_does_not_train_on_is_one_line(tmp_path):
    import os
    import subprocess
    import sys

    config = tmp_path / "c.yaml"
    config.write_text(LAYERS)
    done = subprocess.run(
        [sys.executable, "-m", "cnnctl", "check", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KERAS_BACKEND": "torch"},
    )
    assert done.returncode == 2 and done.stderr.splitlines() == [
        "error: KERAS_BACKEND is 'torch'; cnnctl trains on tensorflow or jax: set KERAS_BACKEND=jax, or unset it "
        "for TensorFlow"
    ], done.stderr[-2000:]


@pytest.mark.parametrize("name, make, expected", CHECK_CASES, ids=[case[0] for case in CHECK_CASES])
def test_hostile_config_values_and_data_files(name, make, expected, tmp_path):
    text = make(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text(text + ("" if "model:" in text else LAYERS))
    from cnnctl.runtime import memory_bytes

    memory = f"{memory_bytes() / 2**30:,.1f}"
    assert one_error("check", config) == f"error: {config}: " + expected.format(d=tmp_path, memory=memory)


def test_a_csv_label_beyond_int64_stays_the_label_it_is(tmp_path):
    """ "99999999999999999999999999" overflowed NumPy's int64 (a traceback); rounded to a float it would have
    become another name. It stays as written, a class name like any other."""
    from cnnctl.config.loading import load_config
    from cnnctl.data.dataset import load_data

    big = "9" * 26
    rows = [f"{label},1,2,3,4" for label in ["0", big] * 10]
    (tmp_path / "d.csv").write_text("label,a,b,c,d\n" + "\n".join(rows) + "\n")
    (tmp_path / "c.yaml").write_text("data: {source: csv, path: d.csv, shape: [2, 2]}\n" + LAYERS)
    assert sorted(load_data(load_config(tmp_path / "c.yaml")).class_names) == ["0", big]


# ---------------------------------------------------------------- image folders


def test_a_class_folder_with_a_newline_in_its_name_stays_one_line(tmp_path):
    (tmp_path / "images" / "ca\nt").mkdir(parents=True)
    (tmp_path / "images" / "ca\nt" / "notes.txt").write_text("not an image")
    image(tmp_path / "images" / "dog" / "1.png")
    (tmp_path / "c.yaml").write_text("data: {source: folder, path: images}\n" + LAYERS)
    assert one_error("check", tmp_path / "c.yaml") == (
        f"error: {tmp_path}/c.yaml: data.path: class 'ca\\nt' has no readable images in {tmp_path}/images "
        "(1 files were skipped)"
    )


def test_a_class_folder_whose_name_is_not_utf8_is_refused(tmp_path):
    image(fsname(tmp_path / "images", b"c\xffat") / "1.png")
    image(tmp_path / "images" / "dog" / "1.png")
    (tmp_path / "c.yaml").write_text("data: {source: folder, path: images}\n" + LAYERS)
    assert one_error("check", tmp_path / "c.yaml") == (
        f"error: {tmp_path}/c.yaml: data.path: class folder 'c\\xffat' in {tmp_path}/images has a name that is not "
        "UTF-8 text (made on another system?); rename it"
    )


def test_dangling_links_link_loops_and_non_utf8_names_in_a_class_folder_are_skipped_with_reasons(tmp_path):
    from cnnctl.config.schema import DataConfig
    from cnnctl.data.folders import load_folder

    root = tmp_path / "images"
    for name in ("cat", "dog"):
        image(root / name / "1.png")
    (root / "cat" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (root / "cat" / "loop.png").symlink_to(root / "cat" / "loop.png")
    (root / "dog" / "again").symlink_to(root / "dog")  # a folder loop: not followed
    image(fsname(root / "dog", b"\xff\xfe.png"))
    start = time.process_time()
    raw = load_folder(DataConfig(source="folder", path=str(root)))
    assert time.process_time() - start < SECONDS
    assert len(raw.x_train) == 2
    assert raw.skipped == [
        f"cat/dangling.png (is a broken symbolic link (its target {tmp_path}/nowhere.png does not exist))",
        "cat/loop.png (cannot be read (Too many levels of symbolic links))",
        "dog/\\xff\\xfe.png (file name is not UTF-8 text; rename it)",
    ]


# ---------------------------------------------------------------- names of 300 characters


def test_a_run_name_of_300_characters_creates_nothing(trained_digits_run, tmp_path):
    runs_dir = tmp_path / "runs"
    error = one_error("train", trained_digits_run.config, "--name", "n" * 300, "--runs-dir", runs_dir)
    assert error.startswith("error: --name nnnn")
    assert error.endswith(
        ": 300 characters; a run name may have at most 200 (the run folder is named <date>-<time>-<name>, "
        "and file systems allow 255 bytes)"
    )
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_a_run_name_is_the_string_given_not_yaml(trained_digits_run, tmp_path):
    """`--name 123` and `--name null` name runs 123 and null: before, the name went through `--set name=...`, where
    YAML read 123 as a number (refused as "must be a string") and null as no name (the config's was used)."""
    from cnnctl import api

    for name in ("123", "null", "true", "1e3"):
        assert api.load(trained_digits_run.config, name=name).name == name
    assert one_error("train", trained_digits_run.config, "--name", "", "--runs-dir", tmp_path) == (
        "error: --name: must be letters, digits, '.', '_' or '-' (got '')"
    )
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "args",
    [["runs", "--runs-dir", "r" * 300], ["evaluate", "r" * 300], ["report", "last", "--runs-dir", "r" * 300]],
    ids=["runs", "evaluate", "report"],
)
def test_a_runs_dir_or_run_of_300_characters(args):
    assert one_error(*args) == (
        f"error: {'r' * 60}…{'r' * 30} (300 characters): file name too long (at most 255 "
        "bytes per name); choose a shorter name"
    )


# ---------------------------------------------------------------- predict inputs


def test_predict_inputs_that_cannot_be_read(trained_digits_run, tmp_path):
    run = trained_digits_run.path
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    np.savez(tmp_path / "none.npz", x=np.zeros((0, 8, 8)))
    crafted_npz(tmp_path / "text.npz", x=b"hello")
    crafted_npz(tmp_path / "huge.npz", x=npy_header((10**6, 10**6)))
    long_name = tmp_path / ("b" * 300 + ".png")
    before = digest(run)
    cases = {
        "dangling.png": "is a broken symbolic link (its target {d}/nowhere.png does not exist); give an image file, "
        "a folder or an .npz file",
        "loop.png": "cannot be read (Too many levels of symbolic links); give an image file, a folder or an .npz file",
        "none.npz": "x holds 0 examples (shape [0, 8, 8]); nothing to classify",
        "text.npz": "member x.npy is not .npy data (EOF: reading magic string, expected 8 bytes got 5)",
        "huge.npz": "member x.npy claims shape [1000000, 1000000] of float32 (4,000,000,000,000 bytes) but holds "
        "only 128 bytes",
    }
    for name, expected in cases.items():
        assert one_error("predict", run, tmp_path / name) == f"error: INPUT {tmp_path / name}: " + expected.format(
            d=tmp_path
        )
    assert one_error("predict", run, long_name).endswith(
        "b.png (" + str(len(str(long_name))) + " characters): cannot be read (File name too long); give an image "
        "file, a folder or an .npz file"
    )
    assert digest(run) == before


def test_predict_reads_a_folder_with_a_non_utf8_name_and_links_that_lead_nowhere(trained_digits_run, tmp_path):
    folder = tmp_path / "in"
    image(fsname(folder, b"\xff.png"))
    (folder / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to(folder)  # a folder loop: not followed
    start = time.process_time()
    result = runner.invoke(
        app, ["predict", str(trained_digits_run.path), str(folder), "--out", str(tmp_path / "p.csv")]
    )
    assert result.exit_code == 0, result.output
    assert time.process_time() - start < SECONDS
    rows = (tmp_path / "p.csv").read_text().splitlines()[1:]
    assert len(rows) == 3 and all(row.startswith(f"{folder}/\\xff.png,") for row in rows)


def test_nan_inputs_are_named_and_get_nan_probabilities(trained_digits_run, tmp_path):
    x = np.full((3, 8, 8), 5.0)
    x[1, 2, 2], x[2, 0, 0] = np.nan, np.inf
    np.savez(tmp_path / "x.npz", x=x)
    result = runner.invoke(
        app, ["predict", str(trained_digits_run.path), str(tmp_path / "x.npz"), "--out", str(tmp_path / "p.csv")]
    )
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if "NaN" in line]
    assert warning == [
        f"warning: 2 of 3 inputs hold NaN or infinite values ({tmp_path}/x.npz[1], {tmp_path}/"
        "x.npz[2]); their probabilities are given as nan, not a prediction"
    ]
    probabilities = {}
    for line in (tmp_path / "p.csv").read_text().splitlines()[1:]:
        probabilities.setdefault(line.split(",")[0], []).append(line.split(",")[-1])
    assert "nan" not in probabilities[f"{tmp_path}/x.npz[0]"]
    assert len(probabilities[f"{tmp_path}/x.npz[0]"]) == 3  # the top 3 classes
    # One row each, with no class: before, they were ranked (argmax of NaN is class 0) beside a nan probability.
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert f"{tmp_path}/x.npz[1],,,,nan" in rows and f"{tmp_path}/x.npz[2],,,,nan" in rows

    from cnnctl import api

    predictions = api.predict(trained_digits_run.path, [tmp_path / "x.npz"])
    assert predictions.predicted[1:] == ["", ""] and predictions.predicted[0] in predictions.class_names
    assert predictions.top_k_names(2)[1:] == [[], []] and len(predictions.top_k_names(2)[0]) == 2


def test_explain_refuses_nan_inputs_before_writing_anything(trained_digits_run, tmp_path):
    x = np.full((2, 8, 8), 5.0)
    x[1, 2, 2] = np.nan
    np.savez(tmp_path / "x.npz", x=x)
    out = tmp_path / "explained"
    error = one_error("explain", trained_digits_run.path, tmp_path / "x.npz", "--out", out)
    assert error == (
        f"error: INPUT {tmp_path}/x.npz[1]: holds NaN or infinite values; Grad-CAM needs finite inputs "
        "(`cnnctl predict` marks such inputs and goes on)"
    )
    assert not out.exists()


# ---------------------------------------------------------------- --out, a full disk, a read-only run folder


@pytest.mark.parametrize(
    "out, expected",
    [
        ("folder", "--out {d}/folder: is a folder; give a file name, e.g. --out {d}/folder/predictions.csv"),
        (
            "a.png/p.csv",
            "--out {d}/a.png/p.csv: {d}/a.png is a file, not a folder; give a path in a folder, e.g. "
            "--out predictions.csv",
        ),
        (
            "p" * 300 + ".csv",
            "--out {short}: a name of 304 bytes; give names of at most 200, e.g. --out predictions.csv",
        ),
    ],
    ids=["a-folder", "under-a-file", "300-characters"],
)
def test_predict_out_that_cannot_be_written_is_refused_before_the_model_runs(digits_run_copy, tmp_path, out, expected):
    from cnnctl.errors import shown_path

    (tmp_path / "folder").mkdir()
    png = image(tmp_path / "a.png")
    before = digest(tmp_path)
    error = one_error("predict", digits_run_copy, png, "--out", tmp_path / out)
    assert error == "error: " + expected.format(d=tmp_path, short=shown_path(tmp_path / out))
    assert "Top-" not in error and digest(tmp_path) == before


WRITING_COMMANDS = {
    "evaluate": (lambda run, tmp: ["evaluate", run], "metrics.json"),
    "plot": (lambda run, tmp: ["plot", run], "loss_curve.png"),
    "report": (lambda run, tmp: ["report", run], "report.html"),
    "predict": (lambda run, tmp: ["predict", run, image(tmp / "a.png"), "--out", run / "p.csv"], "p.csv"),
}
REFUSALS = {
    errno.ENOSPC: "no space left on device; free some space and run the command again (nothing already written "
    "is lost)",
    errno.EACCES: "permission denied; make the folder writable or choose another path",
    errno.EROFS: "read-only file system; choose a path on a writable disk",
}


@pytest.mark.parametrize("code", list(REFUSALS), ids=[errno.errorcode[code] for code in REFUSALS])
@pytest.mark.parametrize("command", list(WRITING_COMMANDS))
def test_a_full_disk_or_read_only_run_folder_changes_nothing(digits_run_copy, tmp_path, monkeypatch, command, code):
    """Every run file is written to a temporary file first (tempfile.mkstemp beside it): the disk refusing that
    is what a full disk or a read-only folder looks like to cnnctl, whoever runs the tests (root ignores chmod)."""
    refused = []

    def refuse(*args, suffix=None, prefix=None, dir=None, **kwargs):
        refused.append(dir)
        raise OSError(code, os.strerror(code), os.path.join(dir or ".", f"{prefix}abcd1234{suffix}"))

    make_args, first_file = WRITING_COMMANDS[command]
    args = make_args(digits_run_copy, tmp_path)
    before = digest(digits_run_copy)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert one_error(*args) == f"error: {digits_run_copy / first_file}: {REFUSALS[code]}"
    assert refused, "the writes no longer go through tempfile.mkstemp: simulate the full disk there instead"
    assert digest(digits_run_copy) == before


def test_a_really_read_only_run_folder(digits_run_copy):
    before = digest(digits_run_copy)
    digits_run_copy.chmod(0o555)
    try:
        if os.access(digits_run_copy, os.W_OK):
            pytest.skip("running as root: chmod does not stop writes (the test above simulates the refusal)")
        assert one_error("report", digits_run_copy) == (
            f"error: {digits_run_copy}/report.html: permission denied; make the folder writable or choose another path"
        )
    finally:
        digits_run_copy.chmod(0o755)
    assert digest(digits_run_copy) == before


@pytest.mark.parametrize(
    "args",
    [
        ["check", "{long}.yaml"],
        ["train", "{long}.yaml"],
        ["cv", "{long}.yaml"],
        ["train", "--resume", "{tmp}/{long}"],
        ["tune", "--resume", "{tmp}/{long}", "--trials", "2"],
        ["export", "{tmp}/{long}", "--format", "onnx"],
        ["evaluate", "{tmp}/{long}"],
        ["sync", "{tmp}/{long}"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_a_name_the_file_system_refuses_is_one_line_in_every_command(tmp_path, args):
    """ENAMETOOLONG wherever a command first touches the name: a config path, a RUN argument."""
    long = "x" * 300
    error = one_error(*[arg.format(long=long, tmp=tmp_path) for arg in args])
    assert error.startswith("error: ") and error.endswith(
        "file name too long (at most 255 bytes per name); choose a shorter name"
    ), error


def test_a_layer_too_big_to_train_is_refused_before_its_weights_exist(tmp_path):
    """A Dense layer whose weights alone take half the machine's memory (so allocating them would succeed, slowly)
    and whose training would need twice the memory: refused before anything is allocated."""
    import subprocess
    import sys

    from cnnctl.runtime import memory_bytes

    units = memory_bytes() // 2 // 4 // 64  # float32 weights of Dense(units) on 64 inputs: half the memory
    config = tmp_path / "huge.yaml"
    config.write_text(f"data: {{source: digits}}\nmodel: {{layers: [Flatten, {{Dense: {{units: {units}}}}}]}}\n")
    # The CLI in a child that reports its own peak memory as it exits (KB on Linux).
    script = (
        "import atexit, resource, sys\n"
        "atexit.register(lambda: print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))\n"
        "from cnnctl.cli.app import main\n"
        f"sys.argv = ['cnnctl', 'check', {str(config)!r}]\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 2, done.stderr
    assert lines[0].startswith(f"error: {config}: model.layers[1] (Dense): the model has {units * 65:,} weights")
    assert "more than this machine's" in lines[0] and f"given {{units: {units}}}" in lines[0]
    assert int(lines[1].split()[1]) * 1024 < min(memory_bytes() // 8, 4 * 2**30)  # nothing near the layer's size
