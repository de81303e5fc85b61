"""Accuracy metrics (keras/src/metrics/accuracy_metrics.py): per-sample 0/1 matches,
averaged with sample weights by MeanMetricWrapper. Shapes are checked: a mismatch raises
ValueError naming the function and both shapes instead of broadcasting."""
import numpy as np

from pylayers.losses.reduction import squeeze_or_expand_to_same_rank
from pylayers.metrics.base import MeanMetricWrapper


def _shape_error(function, y_true, y_pred, expected):
    return ValueError(f"{function}: {expected}. Received: y_true.shape={np.shape(y_true)}, "
                      f"y_pred.shape={np.shape(y_pred)}")


def _same_shape(function, y_true, y_pred):
    aligned_true, aligned_pred = squeeze_or_expand_to_same_rank(np.asarray(y_true),
                                                                np.asarray(y_pred))
    if aligned_true.shape != aligned_pred.shape:
        raise _shape_error(function, y_true, y_pred, "y_true and y_pred must have the same "
                                                     "shape")
    return aligned_true, aligned_pred


def _sparse_labels(function, y_true, y_pred):
    """Labels of shape y_pred.shape[:-1] (a trailing axis of 1 is dropped)."""
    labels, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if labels.ndim == y_pred.ndim and labels.ndim and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if y_pred.ndim == 0 or labels.shape != y_pred.shape[:-1]:
        raise _shape_error(function, y_true, y_pred, "labels must have the shape of y_pred "
                                                     "without its last axis")
    return labels


def _in_top_k(labels, y_pred, k):
    """Keras' in_top_k: the label's score is beaten by fewer than k scores (ties count
    in the label's favour)."""
    label_scores = np.take_along_axis(y_pred, labels.astype(np.int64)[..., None], axis=-1)
    rank = 1 + np.sum(y_pred > label_scores, axis=-1)
    return (rank <= k).astype(np.float32)


def _check_label_range(function, labels, num_classes):
    if np.any((labels < 0) | (labels >= num_classes) | (labels != np.round(labels))):
        raise ValueError(f"{function}: labels must be integers in [0, {num_classes}). "
                         f"Received: {np.unique(labels)[:10].tolist()}")


def accuracy(y_true, y_pred):
    y_true, y_pred = _same_shape("accuracy", y_true, y_pred)
    return (y_true == y_pred).astype(np.float32)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    y_true, y_pred = _same_shape("binary_accuracy", y_true, y_pred)
    return (y_true == (y_pred > threshold)).astype(np.float32)


def categorical_accuracy(y_true, y_pred):
    y_true, y_pred = _same_shape("categorical_accuracy", y_true, y_pred)
    return (np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)).astype(np.float32)


def sparse_categorical_accuracy(y_true, y_pred):
    labels = _sparse_labels("sparse_categorical_accuracy", y_true, y_pred)
    return (labels == np.argmax(y_pred, axis=-1)).astype(np.float32)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    y_true, y_pred = _same_shape("top_k_categorical_accuracy", y_true, y_pred)
    return _in_top_k(np.argmax(y_true, axis=-1), y_pred, k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    labels = _sparse_labels("sparse_top_k_categorical_accuracy", y_true, y_pred)
    _check_label_range("sparse_top_k_categorical_accuracy", labels, np.shape(y_pred)[-1])
    return _in_top_k(labels, np.asarray(y_pred), k)


class Accuracy(MeanMetricWrapper):
    """How often y_pred equals y_true."""

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(accuracy, name=name, dtype=dtype)


class BinaryAccuracy(MeanMetricWrapper):
    """How often (y_pred > threshold) equals y_true."""

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        super().__init__(binary_accuracy, name=name, dtype=dtype, threshold=threshold)
        self.threshold = threshold


class CategoricalAccuracy(MeanMetricWrapper):
    """How often argmax(y_pred) equals argmax(y_true) (one-hot labels)."""

    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(categorical_accuracy, name=name, dtype=dtype)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often argmax(y_pred) equals the integer label."""

    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(sparse_categorical_accuracy, name=name, dtype=dtype)


class TopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the one-hot label is among the k highest scores."""

    def __init__(self, k=5, name="top_k_categorical_accuracy", dtype=None):
        super().__init__(top_k_categorical_accuracy, name=name, dtype=dtype, k=k)
        self.k = k


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the integer label is among the k highest scores."""

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None):
        super().__init__(sparse_top_k_categorical_accuracy, name=name, dtype=dtype, k=k)
        self.k = k
