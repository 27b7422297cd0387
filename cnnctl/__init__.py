"""cnnctl: train, evaluate and explain convolutional networks from YAML files — from the shell or from Python.

    import cnnctl
    result = cnnctl.train("configs/digits.yaml")     # or a dict, a Config; arrays={...} to train on numpy arrays
    result.metrics["accuracy"], result.model, result.history, result.path
    cnnctl.evaluate(result), cnnctl.predict(result, ["digit.png"]), cnnctl.resume("last", epochs=20)

Every function here is cnnctl.api's, the one front door that the command line uses too (cnnctl/cli/ is a thin
shell over it). The package follows the pipeline, one sub-package per stage: config/ → data/ → model/ →
training/ → evaluation/ → reporting/ → workflows/, with runs/ the folder every stage writes and reads; a package
imports only those before it (docs/development.md).
"""

import importlib
from typing import Any

__version__ = "0.1.0"

# The API loads pydantic, numpy and (when called) TensorFlow; `cnnctl --help` imports this package too, so the
# names below are looked up on first use (PEP 562) instead of at `import cnnctl`.
_API_FUNCTIONS = (
    "train",
    "resume",
    "evaluate",
    "predict",
    "explain",
    "export",
    "tune",
    "resume_tune",
    "cross_validate",
    "lr_find",
    "check",
    "describe_data",
    "plot",
    "report",
    "sync",
    "list_runs",
    "list_collections",
    "compare",
    "filter_image",
    "schema",
    "load",
    "find_run",
    "config_reference",
)
_API = {
    **{name: "cnnctl.api" for name in _API_FUNCTIONS},
    "ExportResult": "cnnctl.evaluation.export",
    "TrainResult": "cnnctl.workflows.train",
    "Predictions": "cnnctl.evaluation.predict",
    "Explanation": "cnnctl.evaluation.explain",
    "register_source": "cnnctl.config.sources",
    "load_config": "cnnctl.config.loading",
    "Config": "cnnctl.config.schema",
    "CnnctlError": "cnnctl.errors",
    "ConfigError": "cnnctl.errors",
    "DataError": "cnnctl.errors",
    "RunError": "cnnctl.errors",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'cnnctl' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
