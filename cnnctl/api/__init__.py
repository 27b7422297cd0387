"""cnnctl's front door: every command of the command line is one call here, and so is every use from Python.

The same pipeline as the command line, minus the console: nothing is printed unless `verbose` asks for Keras'
progress, no signal handler is installed (the command line wraps these calls in `signals_interrupt`), and
mistakes raise `cnnctl.ConfigError`, `DataError` or `RunError` with the one-line message the command line prints.

common.py    reading a config (and applying its backend), finding a run, the types the others take
training.py  train, resume, launch_processes, cross_validate, tune, resume_tune, lr_find
runs.py      check, describe_data, evaluate, predict, explain, export, plot, report, sync, list_runs, compare
tools.py     filter_image, schema, config_reference

Importing this package is cheap (the standard library and a few small cnnctl modules): TensorFlow, Keras, numpy
and the stages are imported by the calls that need them, so `cnnctl --help` stays fast.

Example:

    import cnnctl

    result = cnnctl.train("configs/digits.yaml", overrides=["train.epochs=3"])
    print(result.metrics["accuracy"], result.path)          # runs/<id>-digits/
    result = cnnctl.train({"model": {"layers": ["Flatten", {"Dense": {"units": 10, "activation": "softmax"}}]}},
                          arrays={"x_train": x, "y_train": y})
    predictions = cnnctl.predict(result.run, ["digit.png"])
"""

from cnnctl.api.common import (
    ARRAYS_FILE,
    describe_model,
    find_run,
    load,
    prepare_environment,
)
from cnnctl.api.runs import (
    CheckResult,
    PlotResult,
    check,
    compare,
    describe_data,
    evaluate,
    explain,
    export,
    list_collections,
    list_runs,
    plot,
    predict,
    report,
    sync,
)
from cnnctl.api.tools import FilterResult, config_reference, filter_image, schema
from cnnctl.api.training import cross_validate, launch_processes, lr_find, resume, resume_tune, train, tune
from cnnctl.runs import contract
from cnnctl.runs.folder import default_runs_dir
from cnnctl.training.signals import signals_interrupt

__all__ = [
    "ARRAYS_FILE",
    "CheckResult",
    "FilterResult",
    "PlotResult",
    "check",
    "compare",
    "config_reference",
    "contract",
    "cross_validate",
    "lr_find",
    "default_runs_dir",
    "describe_data",
    "describe_model",
    "evaluate",
    "explain",
    "export",
    "filter_image",
    "find_run",
    "launch_processes",
    "list_collections",
    "list_runs",
    "load",
    "plot",
    "predict",
    "prepare_environment",
    "report",
    "sync",
    "resume",
    "resume_tune",
    "schema",
    "signals_interrupt",
    "train",
    "tune",
]
