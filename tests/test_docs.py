"""The manual's generated pages: docs/configuration-reference.md and docs/commands.md are what
`python -m cnnctl.cli.reference` writes today, the reference has a row for every key a loaded config holds (with
that key's default), and the command page shows every command with every option. Nothing here imports TensorFlow."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import typer
import yaml

import cnnctl
from cnnctl import api
from cnnctl.cli import reference
from cnnctl.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "python -m cnnctl.cli.reference"

LAYERS = {"layers": ["Flatten", {"Dense": {"units": 10, "activation": "softmax"}}]}
# Every section that is off by default switched on, so that the keys inside them are in the loaded config too.
EVERY_SECTION_ON = {
    "data": {"fold": {"index": 1, "folds": 5}},
    "model": {**LAYERS, "backbone": {"name": "MobileNetV3Small"}, "from_run": "last"},
    "train": {
        "loss": {"name": "categorical_crossentropy"},
        "reduce_lr_on_plateau": True,
        "tensorboard": True,
        "fine_tune": {"epochs": 1},
    },
}


def leaf_paths(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every key of a dumped config that holds no keys of its own."""
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            yield from leaf_paths(inner, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, value


def reference_rows(text: str) -> dict[str, list[str]]:
    """Key → [default, allowed values, description] for every table row of the configuration reference."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            key, *cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[key.strip("`")] = cells
    return rows


def page_sections(text: str) -> dict[str, str]:
    """`## name` heading → the text up to the next heading."""
    parts = re.split(r"^## (\S+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


@pytest.fixture(scope="module")
def config_page() -> str:
    return api.config_reference()


@pytest.fixture(scope="module")
def commands_page() -> str:
    return reference.commands_markdown()


@pytest.mark.parametrize("name", sorted(reference.PAGES))
def test_the_committed_page_is_what_the_code_generates(name):
    path = ROOT / "docs" / name
    committed = path.read_text(encoding="utf-8") if path.is_file() else ""
    assert committed == reference.PAGES[name](), f"docs/{name} is stale: regenerate it with `{REGENERATE}`"


def test_check_names_a_stale_page_and_writing_makes_it_current(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reference, "DOCS", tmp_path / "docs")
    assert reference.main(["--check"]) == 1
    assert not (tmp_path / "docs").exists()  # --check writes nothing
    assert f"stale: docs/commands.md differs from the code; regenerate it: {REGENERATE}" in capsys.readouterr().err
    assert reference.main([]) == 0
    assert sorted(path.name for path in (tmp_path / "docs").iterdir()) == sorted(reference.PAGES)
    (tmp_path / "docs" / "commands.md").write_text("edited by hand\n", encoding="utf-8")
    assert reference.main(["--check"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"stale: docs/commands.md differs from the code; regenerate it: {REGENERATE}"
    ]


def test_the_reference_has_a_row_for_every_key_of_a_loaded_config(config_page):
    rows = reference_rows(config_page)
    defaulted = cnnctl.load({"model": LAYERS}).model_dump(mode="json")
    switched_on = cnnctl.load(EVERY_SECTION_ON).model_dump(mode="json")
    expected = {path for config in (defaulted, switched_on) for path, _ in leaf_paths(config)}
    assert {"train.epochs", "data.validation_split", "evaluate.calibrate", "train.fine_tune.unfreeze"} <= expected
    assert sorted(expected - set(rows)) == []


def test_the_reference_shows_the_defaults_a_loaded_config_gets(config_page):
    rows = reference_rows(config_page)
    assert rows["train.epochs"][0] == "`10`"
    assert rows["train.batch_size"][0] == "`64`"
    assert rows["data.validation_split"][0] == "`0.1`"
    assert rows["evaluate.top_k"][0] == "`[1, 5]`"
    assert rows["model.layers"][0] == "required"
    # Every default, read back as YAML, is the value a config that leaves the key out is loaded with; `name` is
    # filled in by the loader (the file's stem), `model.layers` is given.
    defaulted = cnnctl.load({"model": LAYERS}).model_dump(mode="json")
    shown = {
        path: yaml.safe_load(rows[path][0].strip("`").replace("\\|", "|"))  # a Markdown cell escapes |
        for path, _ in leaf_paths(defaulted)
        if path not in ("name", "model.layers")
    }
    assert shown == {path: value for path, value in leaf_paths(defaulted) if path in shown}


def test_the_reference_shows_ranges_and_choices(config_page):
    rows = reference_rows(config_page)
    assert rows["data.validation_split"][1] == "`float (0 <= x < 1)`"
    assert rows["data.color_mode"][1] == "`grayscale \\| rgb`"
    assert rows["train.early_stopping"][1] == "`true \\| false \\| mapping \\| null`"
    assert rows["train.optimizer"][1] == "`str \\| mapping`"
    assert "train.optimizer.<other key>" in rows  # the optimizer's own keyword arguments
    assert rows["train.early_stopping.patience"][2] == "epochs without improvement before training stops"
    assert "cnnctl schema" in config_page and "Conv2D" not in config_page  # the layer list stays in the schema


def test_the_commands_page_has_every_command_and_option(commands_page):
    group = typer.main.get_command(app)
    sections = page_sections(commands_page)
    assert sorted(sections) == sorted(group.commands)
    predict = sections["predict"]
    for option in ("--top-k", "--min-confidence", "--out", "--overwrite", "--runs-dir"):
        assert f"| `{option}` |" in predict
    assert "| `--top-k` | `3` | Classes shown per input |" in predict
    assert "| `run` | required |" in predict and "| `inputs...` | required |" in predict
    missing = [
        f"{name}: {option}"
        for name, command in group.commands.items()
        for parameter in command.params
        if parameter.param_type_name == "option"
        for option in parameter.opts
        if f"`{option}`" not in sections[name]
    ]
    assert missing == []
    assert "```sh\ncnnctl predict [OPTIONS] {run} {inputs}...\n```" in predict


def test_generating_the_pages_imports_no_tensorflow():
    code = (
        "import sys; from cnnctl.cli.reference import PAGES; [render() for render in PAGES.values()]; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
