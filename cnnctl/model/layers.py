"""Model: one `model.layers` entry → the keras.layers class of that name, built with its kwargs.

Layers are resolved in the keras.layers namespace and built with the class itself (`cls(**kwargs)`): every
Keras layer works and there is no table of ours to fall behind Keras. Every error names its YAML path.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Optional, Sequence

import keras

from cnnctl.config.schema import LayerSpec
from cnnctl.errors import ConfigError, closest, did_you_mean, first_line


def layer_classes() -> dict[str, type]:
    """Every public Layer class in keras.layers, by the name a config uses (aliases included)."""
    return {
        name: value
        for name, value in vars(keras.layers).items()
        if inspect.isclass(value) and issubclass(value, keras.layers.Layer) and not name.startswith("_")
    }


def make_layer(spec: LayerSpec, where: str, defaults: Optional[dict[str, Any]] = None) -> keras.layers.Layer:
    """`where` is the YAML path shown in errors, e.g. `model.layers[3]`; `defaults` yield to the config's kwargs."""
    classes = layer_classes()
    cls = classes.get(spec.name)
    if cls is None:
        hint = did_you_mean(spec.name, list(classes), quote=False) or "; see the keras.layers documentation for names"
        raise ConfigError(f"{where}: unknown layer '{spec.name}'{hint}")
    try:
        return cls(**{**(defaults or {}), **spec.kwargs})
    except (TypeError, ValueError) as exc:
        explained = _explain_layer_error(exc, cls, spec.kwargs)
        raise ConfigError(f"{where} ({spec.name}): {_clipped(explained)}") from None
    except Exception as exc:  # noqa: BLE001 - Keras raises whatever its code hits: `.lower()` on a null, ...
        raise ConfigError(
            f"{where} ({spec.name}): an argument has the wrong type or value "
            f"({type(exc).__name__}: {_clipped(keras_message(exc))}); "
            f"given {_clipped(flow_text(spec.kwargs))}"
        ) from None


def _clipped(text: str, limit: int = 1000) -> str:
    """Keras echoes the value it rejects, which a config's aliases can make huge: keep an error line readable."""
    return text if len(text) <= limit else f"{text[: limit - 30]}... ({len(text):,} characters in all)"


def flow_text(kwargs: dict) -> str:
    import yaml

    return yaml.safe_dump(kwargs, default_flow_style=True, width=10_000).strip()


def keras_message(exc: BaseException) -> str:
    """The cause inside Keras' "Exception encountered when calling X.call()" wrapper (shown in bold), else the
    first line."""
    inner = re.search(r"\x1b\[1m(.*?)\x1b\[0m", str(exc), re.S)
    return " ".join(inner.group(1).split()) if inner else first_line(exc)


def _explain_layer_error(exc: BaseException, cls: type, given: dict) -> str:
    message = first_line(exc)
    unknown = re.search(r"Unrecognized keyword arguments passed to \w+: (\{.*\})", message)
    if unknown:
        return _unknown_arguments(re.findall(r"'(\w+)':", unknown.group(1)), cls)
    missing = re.search(r"missing \d+ required (?:positional|keyword-only) arguments?: (.+)$", message)
    if missing:
        # A misspelt required argument (kernel_siz) is reported by Python as the right one missing: name the typo.
        accepted = constructor_parameters(cls)
        strangers = [key for key in given if key not in accepted]
        needed = " and ".join(re.findall(r"'(\w+)'", missing.group(1)))
        if strangers:
            return f"{_unknown_arguments(strangers, cls)}; {needed} must be given"
        return f"{cls.__name__} needs {needed}; given {flow_text(given) if given else 'nothing'}"
    identifier = re.search(r"Could not interpret (\w+)(?: function)? identifier: (.+)$", message)
    if identifier:
        kind, value = identifier.groups()
        namespace = getattr(keras, kind + "s", None) or getattr(keras, kind, None)
        names = [name for name in vars(namespace) if not name.startswith("_")] if namespace else []
        names = [name for name in names if name not in ("get", "serialize", "deserialize")]
        return f"unknown {kind} '{value}'{did_you_mean(value, names)}"
    return message


def _unknown_arguments(keys: Sequence[str], cls: type) -> str:
    accepted = list(constructor_parameters(cls))
    hints = []
    for key in keys:
        guess = closest(key, accepted) or next(
            (name for name in accepted if name.startswith(key) or key.startswith(name)), None
        )
        hints.append(f"'{key}' (did you mean '{guess}'?)" if guess else f"'{key}'")
    return f"unknown argument {', '.join(hints)}; {cls.__name__} accepts: {', '.join(accepted)}"


def constructor_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword arguments a layer class accepts, its own first, then its base classes' up to keras.layers.Layer
    (a name given twice keeps the most derived class's default)."""
    parameters: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        for param in inspect.signature(klass.__init__).parameters.values():
            if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY) and param.name != "self":
                parameters.setdefault(param.name, param)
        if klass is keras.layers.Layer:
            break
    return parameters


def shape_text(shape: Sequence[Optional[int]]) -> str:
    return "(" + ", ".join("None" if dim is None else str(dim) for dim in shape) + ")"
