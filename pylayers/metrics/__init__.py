"""Stateful metrics with Keras 3's update_state / result / reset_state API.

`get(identifier)` gives a Metric for a name ('accuracy', 'mae', 'precision', 'auc', ...,
also the names of loss functions such as 'categorical_crossentropy'), an instance, a
config dict or a function (wrapped in MeanMetricWrapper). `resolve` is compile()'s rule,
including Keras' choice of accuracy from the target and prediction shapes."""
import inspect

from pylayers import losses
from pylayers.metrics.accuracy import (Accuracy, BinaryAccuracy, CategoricalAccuracy,
                                       SparseCategoricalAccuracy,
                                       SparseTopKCategoricalAccuracy, TopKCategoricalAccuracy,
                                       accuracy, binary_accuracy, categorical_accuracy,
                                       sparse_categorical_accuracy,
                                       sparse_top_k_categorical_accuracy,
                                       top_k_categorical_accuracy)
from pylayers.metrics.base import Mean, MeanMetricWrapper, Metric
from pylayers.metrics.confusion import AUC, Precision, Recall
from pylayers.metrics.f_score import F1Score, FBetaScore
from pylayers.metrics.regression import MeanAbsoluteError, MeanSquaredError
from pylayers.backend import snake_case as to_snake_case

__all__ = ["Metric", "Mean", "MeanMetricWrapper", "Accuracy", "BinaryAccuracy",
           "CategoricalAccuracy", "SparseCategoricalAccuracy", "TopKCategoricalAccuracy",
           "SparseTopKCategoricalAccuracy", "Precision", "Recall", "AUC", "F1Score",
           "FBetaScore", "MeanAbsoluteError", "MeanSquaredError", "accuracy",
           "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
           "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy", "get", "resolve",
           "serialize", "deserialize"]

CLASSES = (Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
           TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, Precision, Recall,
           F1Score, FBetaScore, AUC, MeanAbsoluteError, MeanSquaredError, Mean)
METRICS_BY_NAME = {**{cls.__name__: cls for cls in CLASSES},
                   **{to_snake_case(cls.__name__): cls for cls in CLASSES},
                   "mse": MeanSquaredError, "MSE": MeanSquaredError,
                   "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError}
LOSS_FUNCTIONS = {fn.__name__: fn for fn in (
    losses.categorical_crossentropy, losses.sparse_categorical_crossentropy,
    losses.binary_crossentropy, losses.kl_divergence, losses.hinge, losses.huber)}


def _known_names():
    return sorted(set(METRICS_BY_NAME) | set(LOSS_FUNCTIONS) | {"acc"})


def serialize(metric):
    return {"module": "keras.metrics", "class_name": type(metric).__name__,
            "config": metric.get_config(), "registered_name": None}


def deserialize(config, custom_objects=None):
    class_name = config.get("class_name")
    known = {**METRICS_BY_NAME, **(custom_objects or {})}
    if class_name not in known:
        raise ValueError(f"Unknown metric: {class_name!r}. Known metrics: {_known_names()}")
    return known[class_name].from_config(config.get("config", {}))


def get(identifier):
    """A Metric for `identifier`; None stays None."""
    if identifier is None or isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        if identifier in METRICS_BY_NAME:
            return METRICS_BY_NAME[identifier]()
        if identifier in LOSS_FUNCTIONS:
            return MeanMetricWrapper(LOSS_FUNCTIONS[identifier], name=identifier)
        raise ValueError(f"Unknown metric: {identifier!r}. Known metrics: {_known_names()}")
    if inspect.isclass(identifier) and issubclass(identifier, Metric):
        return identifier()
    if callable(identifier):
        return MeanMetricWrapper(identifier)
    raise ValueError(f"Could not interpret metric identifier: {identifier!r}")


def _accuracy_for_shapes(name, y_true_shape, y_pred_shape):
    """Keras' compile_utils.get_metric rule for 'accuracy' / 'acc'."""
    is_binary = y_pred_shape[-1] == 1
    is_sparse = len(y_true_shape) < len(y_pred_shape) \
        or (y_true_shape[-1] == 1 and y_pred_shape[-1] > 1)
    if is_binary:
        return BinaryAccuracy(name=name)
    return SparseCategoricalAccuracy(name=name) if is_sparse else CategoricalAccuracy(name=name)


def resolve(identifier, y_true_shape, y_pred_shape, loss=None):
    """The metric compile() builds for `identifier` and these target / prediction shapes,
    named as Keras logs it: the string the user wrote ('acc', 'mae', ...), else the
    metric's own name. `loss` is accepted for the compile interface; Keras' rule does
    not depend on it."""
    if identifier is None:
        raise ValueError("Expected metric, received `None`")
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        return _accuracy_for_shapes(identifier, tuple(y_true_shape), tuple(y_pred_shape))
    metric = get(identifier)
    if isinstance(identifier, str):
        metric.name = identifier
    return metric
