"""F-beta and F1 scores (keras/src/metrics/f_score_metrics.py)."""
import numpy as np

from pylayers.metrics.base import Metric

EPSILON = 1e-7
AVERAGES = (None, "micro", "macro", "weighted")


class FBetaScore(Metric):
    """(1 + beta^2) * precision * recall / (beta^2 * precision + recall) per class
    (average=None), over all classes pooled ('micro'), or their mean ('macro') or
    support-weighted mean ('weighted'). Without a threshold, each row's highest score is
    the positive prediction."""

    def __init__(self, average=None, beta=1.0, threshold=None, name="fbeta_score", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if average not in AVERAGES:
            raise ValueError(f"Invalid `average` argument value. Expected one of: "
                             f"{AVERAGES}. Received: average={average!r}")
        if not isinstance(beta, float) or beta <= 0.0:
            raise ValueError(f"Invalid `beta` argument value. It should be a Python float "
                             f"> 0. Received: beta={beta!r}")
        if threshold is not None and (not isinstance(threshold, float)
                                      or not 0.0 < threshold <= 1.0):
            raise ValueError("Invalid `threshold` argument value. It should be a Python "
                             f"float with 0 < threshold <= 1. Received: threshold={threshold!r}")
        self.average = average
        self.beta = beta
        self.threshold = threshold
        self.num_classes = None

    def _build(self, num_classes):
        shape = () if self.average == "micro" else (num_classes,)
        for name in ("true_positives", "false_positives", "false_negatives",
                     "intermediate_weights"):
            self._add_state(name, shape)
        self.num_classes = num_classes

    def _checked(self, y_true, y_pred, sample_weight):
        y_true = np.asarray(y_true, dtype=np.float64)
        y_pred = np.asarray(y_pred, dtype=np.float64)
        if y_pred.ndim != 2 or y_true.shape != y_pred.shape:
            raise ValueError(f"{self._title()} expects 2D inputs of one shape (batch_size, "
                             f"output_dim). Received input shapes: y_pred.shape={y_pred.shape} "
                             f"and y_true.shape={y_true.shape}.")
        if self.num_classes not in (None, y_pred.shape[1]):
            raise ValueError(f"{self._title()} was built for {self.num_classes} classes; "
                             f"received y_pred.shape={y_pred.shape}")
        weight = np.ones(len(y_pred)) if sample_weight is None \
            else np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        if weight.shape != (len(y_pred),):
            raise ValueError(f"{self._title()}: sample_weight of shape "
                             f"{np.shape(sample_weight)} does not match {len(y_pred)} samples")
        return y_true, y_pred, weight[:, None]

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred, weight = self._checked(y_true, y_pred, sample_weight)
        if self.num_classes is None:
            self._build(y_pred.shape[1])
        if self.threshold is None:
            predicted = (y_pred >= y_pred.max(axis=-1, keepdims=True)) & (np.abs(y_pred) > 1e-9)
        else:
            predicted = y_pred > self.threshold
        axis = None if self.average == "micro" else 0
        self.true_positives += np.sum(weight * predicted * y_true, axis=axis)
        self.false_positives += np.sum(weight * predicted * (1 - y_true), axis=axis)
        self.false_negatives += np.sum(weight * ~predicted * y_true, axis=axis)
        self.intermediate_weights += np.sum(weight * y_true, axis=axis)

    def result(self):
        if self.num_classes is None:
            return 0.0
        precision = self.true_positives / (self.true_positives + self.false_positives + EPSILON)
        recall = self.true_positives / (self.true_positives + self.false_negatives + EPSILON)
        beta_squared = self.beta ** 2
        score = (1 + beta_squared) * precision * recall \
            / (beta_squared * precision + recall + EPSILON)
        if self.average == "weighted":
            weights = self.intermediate_weights / (np.sum(self.intermediate_weights) + EPSILON)
            return float(np.sum(score * weights))
        if self.average is not None:
            return float(np.mean(score))
        return score

    def get_config(self):
        return {**super().get_config(), "average": self.average, "beta": self.beta,
                "threshold": self.threshold}


class F1Score(FBetaScore):
    """FBetaScore with beta = 1."""

    def __init__(self, average=None, threshold=None, name="f1_score", dtype=None):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name,
                         dtype=dtype)

    def get_config(self):
        config = super().get_config()
        del config["beta"]
        return config
