"""Precision, Recall and AUC from weighted confusion counts at thresholds
(keras/src/metrics/confusion_metrics.py and metrics_utils.py). A prediction is positive
at threshold t when y_pred > t; a label is positive when it is non-zero."""
import numpy as np

from pylayers.losses.reduction import squeeze_or_expand_to_same_rank
from pylayers.metrics.base import Metric, sample_weight_for

EPSILON = 1e-7
NEG_INF = -1e10


def _aligned(owner, y_true, y_pred, sample_weight):
    """(y_true, y_pred, weights) as float64 arrays of one shape."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    aligned_pred, aligned_true = squeeze_or_expand_to_same_rank(y_pred, y_true)
    if aligned_true.shape != aligned_pred.shape:
        raise ValueError(f"{owner}: y_true and y_pred must have the same shape. Received: "
                         f"y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}")
    weights = np.ones(aligned_pred.shape) if sample_weight is None \
        else sample_weight_for(owner, sample_weight, aligned_pred.shape)
    return aligned_true, aligned_pred, weights


def _evenly_spaced(thresholds):
    """Keras' test for thresholds i / (n - 1), which it counts by bucketing."""
    n = len(thresholds)
    return n >= 3 and np.allclose(thresholds, np.arange(n, dtype=np.float32) / (n - 1),
                                  atol=EPSILON)


def confusion_counts(y_true, y_pred, weights, thresholds, evenly_spaced):
    """Weighted (tp, fp, tn, fn) at each threshold (ascending) over flattened inputs.
    Evenly spaced thresholds bucket the float32 predictions clipped to [0, 1], as
    Keras' optimised path does; others compare y_pred > threshold."""
    positive = (y_true != 0).ravel()
    y_pred, weights = y_pred.ravel(), weights.ravel()
    n = len(thresholds)
    if evenly_spaced:
        scaled = np.clip(y_pred, 0, 1).astype(np.float32) * np.float32(n - 1)
        above = np.maximum(np.ceil(scaled).astype(np.int64), 1)  # thresholds below y_pred
    else:
        above = np.searchsorted(np.asarray(thresholds), y_pred, side="left")
    true_per_bucket = np.bincount(above, weights * positive, minlength=n + 1)
    false_per_bucket = np.bincount(above, weights * ~positive, minlength=n + 1)
    tp = true_per_bucket[::-1].cumsum()[::-1][1:]
    fp = false_per_bucket[::-1].cumsum()[::-1][1:]
    return tp, fp, np.sum(weights * ~positive) - fp, np.sum(weights * positive) - tp


def _divide_no_nan(a, b):
    return np.divide(a, b, out=np.zeros_like(np.asarray(a, dtype=np.float64)), where=b != 0)


class _ThresholdMetric(Metric):
    """Precision and Recall: thresholds, top_k, class_id as in Keras."""

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.init_thresholds = thresholds
        self.top_k = top_k
        self.class_id = class_id
        default = 0.5 if top_k is None else NEG_INF
        self.thresholds = [default] if thresholds is None else \
            list(np.atleast_1d(thresholds).astype(float))
        if thresholds is not None and any(not 0 <= t <= 1 for t in self.thresholds):
            raise ValueError(f"{self._title()}: threshold values must be in [0, 1]. "
                             f"Received: {thresholds}")
        self._add_state("true_positives", (len(self.thresholds),))
        self._add_state(self.second_count, (len(self.thresholds),))

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred, weights = _aligned(self._title(), y_true, y_pred, sample_weight)
        if self.top_k is not None:
            y_pred = self._keep_top_k(y_pred)
        if self.class_id is not None:
            if y_pred.ndim < 2 or not 0 <= self.class_id < y_pred.shape[-1]:
                raise ValueError(f"{self._title()}: class_id={self.class_id} needs y_pred of "
                                 f"shape (samples, classes > class_id). Received: "
                                 f"{y_pred.shape}")
            y_true, y_pred, weights = (a[..., self.class_id] for a in (y_true, y_pred, weights))
        order = np.argsort(self.thresholds)
        counts = confusion_counts(y_true, y_pred, weights, np.asarray(self.thresholds)[order],
                                  False)
        unsorted = np.empty_like(order)
        unsorted[order] = np.arange(len(order))
        by_name = dict(zip(("true_positives", "false_positives", "true_negatives",
                            "false_negatives"), (c[unsorted] for c in counts)))
        self.true_positives += by_name["true_positives"]
        getattr(self, self.second_count)[...] += by_name[self.second_count]

    def _keep_top_k(self, y_pred):
        top = np.argsort(-y_pred, axis=-1, kind="stable")[..., :self.top_k]
        kept = np.full_like(y_pred, NEG_INF)
        np.put_along_axis(kept, top, np.take_along_axis(y_pred, top, axis=-1), axis=-1)
        return kept

    def result(self):
        ratio = _divide_no_nan(self.true_positives,
                               self.true_positives + getattr(self, self.second_count))
        return float(ratio[0]) if len(self.thresholds) == 1 else ratio

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds,
                "top_k": self.top_k, "class_id": self.class_id}


class Precision(_ThresholdMetric):
    """true_positives / (true_positives + false_positives) at each threshold."""
    second_count = "false_positives"


class Recall(_ThresholdMetric):
    """true_positives / (true_positives + false_negatives) at each threshold."""
    second_count = "false_negatives"


class AUC(Metric):
    """Area under the ROC or PR curve by a Riemann sum over `num_thresholds` thresholds
    (Keras' "interpolation" uses the trapezoid for ROC and Davis & Goadrich's
    interpolation for PR). Single-label only."""

    CURVES = ("ROC", "PR")
    SUMMATIONS = ("interpolation", "minoring", "majoring")

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation",
                 name=None, dtype=None, thresholds=None, multi_label=False, num_labels=None,
                 label_weights=None, from_logits=False):
        super().__init__(name=name, dtype=dtype)
        self._check_supported(curve, summation_method, multi_label, num_labels, label_weights)
        self.curve, self.summation_method = curve.upper(), summation_method.lower()
        self.from_logits = from_logits
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            inner = sorted(float(t) for t in thresholds)
            self._evenly_spaced = _evenly_spaced([0.0] + inner + [1.0])
        else:
            if num_thresholds <= 1:
                raise ValueError("Argument `num_thresholds` must be an integer > 1. "
                                 f"Received: num_thresholds={num_thresholds}")
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self._evenly_spaced = True
        self.num_thresholds = len(inner) + 2
        self.thresholds = [0.0 - EPSILON] + inner + [1.0 + EPSILON]
        for count in ("true_positives", "false_positives", "true_negatives",
                      "false_negatives"):
            self._add_state(count, (self.num_thresholds,))

    def _check_supported(self, curve, summation_method, multi_label, num_labels,
                         label_weights):
        if str(curve).upper() not in self.CURVES:
            raise ValueError(f"{self._title()}: curve must be one of {self.CURVES}. "
                             f"Received: curve={curve!r}")
        if str(summation_method).lower() not in self.SUMMATIONS:
            raise ValueError(f"{self._title()}: summation_method must be one of "
                             f"{self.SUMMATIONS}. Received: {summation_method!r}")
        if multi_label or num_labels is not None or label_weights is not None:
            raise ValueError(f"{self._title()}: multi_label, num_labels and label_weights "
                             "are not supported by pylayers")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred, weights = _aligned(self._title(), y_true, y_pred, sample_weight)
        if self.from_logits:
            y_pred = 0.5 * (1 + np.tanh(0.5 * y_pred))
        tp, fp, tn, fn = confusion_counts(y_true, y_pred, weights, self.thresholds,
                                          self._evenly_spaced)
        self.true_positives += tp
        self.false_positives += fp
        self.true_negatives += tn
        self.false_negatives += fn

    def _interpolated_pr_auc(self):
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        d_tp = tp[:-1] - tp[1:]
        predicted = tp + fp
        d_predicted = predicted[:-1] - predicted[1:]
        slope = _divide_no_nan(d_tp, np.maximum(d_predicted, 0))
        intercept = tp[1:] - slope * predicted[1:]
        both_positive = (predicted[:-1] > 0) & (predicted[1:] > 0)
        ratio = np.where(both_positive,
                         _divide_no_nan(predicted[:-1], np.maximum(predicted[1:], 0)), 1.0)
        increments = _divide_no_nan(slope * (d_tp + intercept * np.log(ratio)),
                                    np.maximum(tp[1:] + fn[1:], 0))
        return float(np.sum(increments))

    def result(self):
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolated_pr_auc()
        tp, fp, tn, fn = (self.true_positives, self.false_positives, self.true_negatives,
                          self.false_negatives)
        recall = _divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide_no_nan(fp, fp + tn), recall
        else:
            x, y = recall, _divide_no_nan(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return float(np.sum((x[:-1] - x[1:]) * heights))

    def get_config(self):
        config = {**super().get_config(), "num_thresholds": self.num_thresholds,
                  "curve": self.curve, "summation_method": self.summation_method,
                  "multi_label": False, "num_labels": None, "label_weights": None,
                  "from_logits": self.from_logits}
        if self._init_from_thresholds:
            config["thresholds"] = self.thresholds[1:-1]
        return config
