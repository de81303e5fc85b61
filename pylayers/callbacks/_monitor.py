"""What the monitoring callbacks share: the direction of a metric and its lookup."""
import warnings

import numpy as np

# Metric names that get better as they grow, matched as substrings as Keras does.
_INCREASING_NAMES = ("acc", "auc", "precision", "recall", "f1", "iou", "top_k")


def check_mode(mode, owner):
    """`mode` if it is 'auto', 'min' or 'max'; otherwise Keras' warning and 'auto'."""
    if mode not in ("auto", "min", "max"):
        warnings.warn(f"{owner} mode '{mode}' is unknown, fallback to auto mode.",
                      stacklevel=3)
        return "auto"
    return mode


def resolve_mode(monitor, mode, model):
    """'min' or 'max' for `monitor`: `mode` itself unless 'auto'.

    With 'auto', a metric object of the model named like `monitor` (without
    `val_`) decides through its `_direction` ('up' or 'down'); failing that,
    names containing acc, auc, precision, recall, ... are maximised, and every
    other name (loss, mse, ...) minimised.
    """
    if mode != "auto":
        return mode
    name = monitor[len("val_"):] if monitor.startswith("val_") else monitor
    for metric in getattr(model, "metrics", None) or ():
        if getattr(metric, "name", None) == name and hasattr(metric, "_direction"):
            return "max" if metric._direction == "up" else "min"
    if name != "loss" and any(part in name for part in _INCREASING_NAMES):
        return "max"
    return "min"


def worst_value(mode):
    return np.inf if mode == "min" else -np.inf


def monitored_value(logs, monitor, what):
    """`logs[monitor]`, or None with Keras' warning naming the available keys."""
    logs = logs or {}
    value = logs.get(monitor)
    if value is None:
        warnings.warn(f"{what} conditioned on metric `{monitor}` which is not available. "
                      f"Available metrics are: {','.join(logs)}", stacklevel=3)
    return value


def check_non_negative(name, value, owner):
    if not isinstance(value, (int, float, np.integer, np.floating)) or value < 0:
        raise ValueError(f"{owner} expects `{name}` to be a number >= 0. "
                         f"Received: {name}={value!r}")
