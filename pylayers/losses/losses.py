"""Losses with Keras 3's values (keras/src/losses/losses.py) and their exact gradients.

Every loss reduces over the last axis to per-sample values, then Keras' reduction
("sum_over_batch_size" by default) with sample_weight gives the scalar. Internally each
loss computes, in float64, the per-sample values and a local gradient G with y_pred's
shape such that d(values)/d(y_pred) = G (elementwise along the reduced last axis), so
d(loss)/d(y_pred) = W[..., None] * G with W the reduction weights."""
import numpy as np

from pylayers._kernels import losses as loss_kernels
from pylayers.backend import auto_name
from pylayers.losses.reduction import (reduction_weights, squeeze_or_expand_to_same_rank,
                                       standardize_reduction)

# keras.backend.epsilon() and Keras' clip bounds as float32 tensors hold them
# (1 - 1e-7 rounds to 1 - 1.19e-7, which sets the loss of a saturated probability).
EPSILON = float(np.float32(1e-7))
ONE_MINUS_EPSILON = float(np.float32(1.0 - 1e-7))


def _log_softmax(logits):
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _clip_with_mask(x, low, high):
    """clip(x) and the clip's derivative (1 inside [low, high], 0 where clipped)."""
    return np.clip(x, low, high), ((x >= low) & (x <= high)).astype(np.float64)


def _labelled_positions(labels, num_classes):
    """Flat index of each sample's labelled column in a C-ordered (..., num_classes)
    array."""
    return np.arange(labels.size) * num_classes + labels.reshape(-1)


def _values_of_probabilities(labels, y_pred):
    """-log(clip(p[label] / sum(p))) per sample: the one-hot crossentropy's values
    exactly (its other terms are zeros), from the labelled column alone."""
    picked = y_pred.reshape(-1)[_labelled_positions(labels, y_pred.shape[-1])]
    return -np.log(np.clip(picked.reshape(labels.shape) / np.sum(y_pred, axis=-1),
                           EPSILON, ONE_MINUS_EPSILON))


# Reductions to one number, and the ones that weigh every sample's value alike when
# there is no sample weight or mask (1 / count, or 1 for "sum").
SCALAR_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight", "sum")


def _row_weight(reduction, rows):
    """Each sample's weight in a SCALAR_REDUCTIONS loss with no sample weight or mask."""
    return 1.0 if reduction == "sum" else 1.0 / rows


def _float32_alike(y_true, y_pred):
    """Both float32 arrays of one non-empty shape (the compiled losses' inputs)."""
    return (type(y_pred) is np.ndarray and type(y_true) is np.ndarray
            and y_pred.dtype == np.float32 and y_true.dtype == np.float32
            and y_pred.ndim >= 1 and y_pred.size > 0 and y_true.shape == y_pred.shape)


def _is_activation(activation, name):
    return activation == name or getattr(activation, "__name__", None) == name


# ---- per-sample values and local gradients, float64 -----------------------------------
# Each returns (values, local_gradient or None); inputs already aligned and validated.

def _categorical_crossentropy(y_true, y_pred, from_logits, with_grad):
    if from_logits:
        log_prob = _log_softmax(y_pred)
        values = -np.sum(y_true * log_prob, axis=-1)
        if not with_grad:
            return values, None
        return values, np.exp(log_prob) * np.sum(y_true, axis=-1, keepdims=True) - y_true
    total = np.sum(y_pred, axis=-1, keepdims=True)
    prob, inside = _clip_with_mask(y_pred / total, EPSILON, ONE_MINUS_EPSILON)
    values = -np.sum(y_true * np.log(prob), axis=-1)
    if not with_grad:
        return values, None
    d_normalized = -y_true / prob * inside          # through the clip
    d_dot_q = np.sum(d_normalized * y_pred, axis=-1, keepdims=True) / total
    return values, (d_normalized - d_dot_q) / total  # through q = p / sum(p)


def _binary_crossentropy(y_true, y_pred, from_logits, with_grad):
    if from_logits:
        elementwise = np.maximum(y_pred, 0) - y_pred * y_true \
            + np.log1p(np.exp(-np.abs(y_pred)))
        local = None if not with_grad else 0.5 * (1 + np.tanh(0.5 * y_pred)) - y_true
    else:
        prob, inside = _clip_with_mask(y_pred, EPSILON, ONE_MINUS_EPSILON)
        elementwise = -(y_true * np.log(prob) + (1 - y_true) * np.log(1 - prob))
        local = None if not with_grad else (-y_true / prob + (1 - y_true) / (1 - prob)) * inside
    values = np.mean(elementwise, axis=-1)
    return values, None if local is None else local / y_pred.shape[-1]


def _mean_squared_error(y_true, y_pred, with_grad):
    error = y_pred - y_true
    return np.mean(error ** 2, axis=-1), (2 * error / error.shape[-1]) if with_grad else None


def _mean_absolute_error(y_true, y_pred, with_grad):
    error = y_pred - y_true
    return (np.mean(np.abs(error), axis=-1),
            np.sign(error) / error.shape[-1] if with_grad else None)


def _huber(y_true, y_pred, delta, with_grad):
    error = y_pred - y_true
    quadratic = np.abs(error) <= delta
    elementwise = np.where(quadratic, 0.5 * error ** 2, delta * np.abs(error) - 0.5 * delta ** 2)
    local = np.where(quadratic, error, delta * np.sign(error)) / error.shape[-1]
    return np.mean(elementwise, axis=-1), local if with_grad else None


def _kl_divergence(y_true, y_pred, with_grad):
    target = np.clip(y_true, EPSILON, 1)
    prob, inside = _clip_with_mask(y_pred, EPSILON, 1)
    values = np.sum(target * np.log(target / prob), axis=-1)
    return values, -target / prob * inside if with_grad else None


def _hinge(y_true, y_pred, with_grad):
    if np.all((y_true == 0) | (y_true == 1)):
        y_true = 2.0 * y_true - 1.0
    margin = 1.0 - y_true * y_pred
    local = -y_true * (margin > 0) / y_pred.shape[-1]
    return np.mean(np.maximum(margin, 0.0), axis=-1), local if with_grad else None


# ---- loss objects ---------------------------------------------------------------------

class Loss:
    """Base: `__call__` gives Keras' value, `forward_backward` the value and d/d(y_pred),
    `fused_backward` the value and d/d(logits) through the last activation, or None."""

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        self.name = name or auto_name(type(self).__name__)
        self.reduction = standardize_reduction(reduction)
        self.dtype = dtype

    # Subclasses: _compute(y_true, y_pred, with_grad) -> (values, local_gradient, mask)
    def _compute(self, y_true, y_pred, with_grad):
        raise NotImplementedError

    def _aligned(self, y_true, y_pred):
        """float64 arrays after Keras' squeeze/expand, shapes checked (equal shapes)."""
        y_true, y_pred = self._as_arrays(y_true, y_pred)
        aligned_true, aligned_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        if aligned_true.shape != aligned_pred.shape or aligned_pred.ndim == 0:
            raise ValueError(f"{self._title()}: y_true and y_pred must have the same shape. "
                             f"Received: y_true.shape={y_true.shape}, "
                             f"y_pred.shape={y_pred.shape}")
        return aligned_true.astype(np.float64), aligned_pred

    def _as_arrays(self, y_true, y_pred):
        y_pred = np.asarray(y_pred, dtype=np.float64)
        y_true = np.asarray(y_true)
        if y_true.dtype.kind not in "biuf":
            raise TypeError(f"{self._title()}: y_true must be numeric. Received dtype "
                            f"{y_true.dtype}")
        return y_true, y_pred

    def _title(self):
        return f"{type(self).__name__} '{self.name}'"

    def _weights(self, values, mask, sample_weight):
        return reduction_weights(self._title(), values.shape, sample_weight, mask,
                                 self.reduction)

    def __call__(self, y_true, y_pred, sample_weight=None):
        values, _, mask = self._compute(y_true, y_pred, with_grad=False)
        weights = self._weights(values, mask, sample_weight)
        if self.reduction in (None, "none"):
            return (values * weights).astype(np.float32)
        return float(np.sum(values * weights))

    def forward_backward(self, y_true, y_pred, sample_weight=None):
        """(reduced loss, float32 d(loss)/d(y_pred) of y_pred's shape). The gradient is
        exact for Keras' value, including zero where a probability was clipped."""
        values, local, mask = self._compute(y_true, y_pred, with_grad=True)
        return self._reduced_with_gradient(values, local, mask, sample_weight,
                                           np.shape(y_pred))

    def _reduced_with_gradient(self, values, local, mask, sample_weight, pred_shape):
        if self.reduction in (None, "none"):
            raise ValueError(f"{self._title()}: forward_backward needs a reduction to a "
                             f"scalar. Received: reduction={self.reduction!r}")
        weights = self._weights(values, mask, sample_weight)
        gradient = self._to_prediction_layout(weights[..., None] * local).reshape(pred_shape)
        return float(np.sum(values * weights)), gradient.astype(np.float32)

    def _to_prediction_layout(self, gradient):
        """Gradients are computed with the reduced axis last; this puts it back."""
        return gradient

    def fused_backward(self, y_true, y_pred, activation, sample_weight=None):
        """None: this loss has no fused gradient through an activation."""
        return None

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


class _ElementwiseLoss(Loss):
    """A loss whose function takes aligned (y_true, y_pred, with_grad)."""

    function = None

    def _compute(self, y_true, y_pred, with_grad):
        values, local = type(self).function(*self._aligned(y_true, y_pred), with_grad)
        return values, local, None


class MeanSquaredError(_ElementwiseLoss):
    function = staticmethod(_mean_squared_error)

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def forward_backward(self, y_true, y_pred, sample_weight=None):
        """float32 predictions and targets of one shape, with no sample weight, go
        through one compiled pass; anything else the general way."""
        if not (sample_weight is None and self.reduction in SCALAR_REDUCTIONS
                and _float32_alike(y_true, y_pred)):
            return super().forward_backward(y_true, y_pred, sample_weight)
        rows = y_pred.reshape(-1, y_pred.shape[-1])
        value, gradient = loss_kernels.mean_squared_error(
            np.ascontiguousarray(rows), np.ascontiguousarray(y_true.reshape(rows.shape)),
            _row_weight(self.reduction, len(rows)))
        return value, gradient.reshape(y_pred.shape)


class MeanAbsoluteError(_ElementwiseLoss):
    function = staticmethod(_mean_absolute_error)

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)


class KLDivergence(_ElementwiseLoss):
    function = staticmethod(_kl_divergence)

    def __init__(self, reduction="sum_over_batch_size", name="kl_divergence", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)


class Hinge(_ElementwiseLoss):
    """Labels in {0, 1} are mapped to {-1, 1} first, as Keras does."""
    function = staticmethod(_hinge)

    def __init__(self, reduction="sum_over_batch_size", name="hinge", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)


class Huber(Loss):
    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if delta is None or delta < 0:
            raise ValueError(f"Huber: `delta` must be >= 0. Received: delta={delta!r}")
        self.delta = delta

    def _compute(self, y_true, y_pred, with_grad):
        values, local = _huber(*self._aligned(y_true, y_pred), self.delta, with_grad)
        return values, local, None

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


class _Crossentropy(Loss):
    """Shared arguments of the crossentropies and the fused softmax/sigmoid gradient."""

    fused_activation = None

    def __init__(self, from_logits, name, reduction, dtype):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = from_logits

    def fused_backward(self, y_true, y_pred, activation, sample_weight=None):
        """When y_pred = activation(logits) with the activation this loss fuses with
        (softmax for the categorical losses, sigmoid for binary), and from_logits is
        False: (the loss of y_pred, d(loss)/d(logits)), the gradient being
        W * (y_pred * sum(y_true) - y_true) (softmax) or W * (y_pred - y_true) / width
        (sigmoid). It equals the chain rule through `forward_backward` except where a
        probability lies within 1e-7 of 0 or 1: there Keras' clipping makes the exact
        gradient zero while the fused one keeps pushing toward the label. None when
        not fusible."""
        if self.from_logits or not self._fusible(activation):
            return None
        inputs = self._prepared(y_true, y_pred)
        values, _, mask = self._values(inputs, with_grad=False)
        return self._reduced_with_gradient(values, self._fused_local_gradient(inputs), mask,
                                           sample_weight, np.shape(y_pred))

    # Subclasses: _prepared(y_true, y_pred) -> checked inputs; _values(inputs, with_grad)
    # -> (values, local gradient, mask); _fused_local_gradient(inputs) -> d/d(logits).
    def _compute(self, y_true, y_pred, with_grad):
        return self._values(self._prepared(y_true, y_pred), with_grad)

    def _fusible(self, activation):
        return _is_activation(activation, self.fused_activation)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits}


class CategoricalCrossentropy(_Crossentropy):
    """-sum(y * log(p)) over `axis`, p normalised by its sum and clipped to
    [1e-7, 1 - 1e-7], or log_softmax(y_pred) with from_logits; label_smoothing moves
    y toward 1 / num_classes."""

    fused_activation = "softmax"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy",
                 dtype=None):
        super().__init__(from_logits, name, reduction, dtype)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"`axis` must be of type `int`. Received: axis={axis!r}")
        self.label_smoothing = label_smoothing
        self.axis = axis

    def _prepared(self, y_true, y_pred):
        """Aligned float64 arrays with the class axis moved last, labels smoothed."""
        y_true, y_pred = self._aligned(y_true, y_pred)
        if not -y_pred.ndim <= self.axis < y_pred.ndim:
            raise ValueError(f"{self._title()}: axis={self.axis} is out of range for "
                             f"y_pred of shape {y_pred.shape}")
        if self.axis % y_pred.ndim != y_pred.ndim - 1:
            y_true = np.moveaxis(y_true, self.axis, -1)
            y_pred = np.moveaxis(y_pred, self.axis, -1)
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) \
                + self.label_smoothing / y_true.shape[-1]
        return y_true, y_pred

    def _values(self, inputs, with_grad):
        return (*_categorical_crossentropy(*inputs, self.from_logits, with_grad), None)

    def _to_prediction_layout(self, gradient):
        if self.axis % gradient.ndim == gradient.ndim - 1:
            return gradient
        return np.moveaxis(gradient, -1, self.axis)

    def _fusible(self, activation):
        return super()._fusible(activation) and self.axis == -1

    def _fused_local_gradient(self, inputs):
        y_true, y_pred = inputs
        return y_pred * np.sum(y_true, axis=-1, keepdims=True) - y_true

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing,
                "axis": self.axis}


class SparseCategoricalCrossentropy(_Crossentropy):
    """Categorical crossentropy with integer labels of shape y_pred.shape[:-1] (or with a
    trailing axis of 1). Labels equal to ignore_class contribute nothing and the mean is
    over the other labels."""

    fused_activation = "softmax"

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 axis=-1, name="sparse_categorical_crossentropy", dtype=None):
        super().__init__(from_logits, name, reduction, dtype)
        if axis != -1:
            raise ValueError(f"{type(self).__name__}: only axis=-1 is supported. "
                             f"Received: axis={axis!r}")
        self.ignore_class = ignore_class

    def fused_backward(self, y_true, y_pred, activation, sample_weight=None):
        """A batch of float32 softmax rows with integer labels, no weights and no ignored
        class goes through one compiled pass; anything else (or a bad label, which the
        general path reports) the general way."""
        fast = None
        if self._fusible_in_c(y_true, y_pred, activation, sample_weight):
            fast = self._fused_in_c(y_true, y_pred)
        return fast if fast is not None else \
            super().fused_backward(y_true, y_pred, activation, sample_weight)

    def _fusible_in_c(self, y_true, y_pred, activation, sample_weight):
        return (sample_weight is None and self.ignore_class is None and not self.from_logits
                and self.reduction in SCALAR_REDUCTIONS and self._fusible(activation)
                and type(y_pred) is np.ndarray and y_pred.dtype == np.float32
                and y_pred.ndim == 2 and len(y_pred)
                and type(y_true) is np.ndarray and y_true.dtype.kind in "iu"
                and y_true.shape in ((len(y_pred),), (len(y_pred), 1)))

    def _fused_in_c(self, y_true, y_pred):
        """(loss, gradient) from the compiled kernel, or None for a label out of range."""
        value, gradient = loss_kernels.sparse_softmax_crossentropy(
            np.ascontiguousarray(y_pred), np.ascontiguousarray(y_true.reshape(-1), np.int64),
            _row_weight(self.reduction, len(y_pred)), EPSILON, ONE_MINUS_EPSILON)
        return None if value is None else (value, gradient)

    def _prepared(self, y_true, y_pred):
        """(integer labels with ignored ones set to 0, float64 y_pred, valid mask)."""
        y_true, y_pred = self._as_arrays(y_true, y_pred)
        labels = y_true
        if labels.ndim == y_pred.ndim and labels.ndim and labels.shape[-1] == 1:
            labels = labels[..., 0]
        if y_pred.ndim == 0 or labels.shape != y_pred.shape[:-1]:
            raise ValueError(f"{self._title()}: labels must have the shape of y_pred without "
                             f"its last axis (or with a last axis of 1). Received: "
                             f"y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}")
        valid = None if self.ignore_class is None else labels != self.ignore_class
        self._check_labels(labels if valid is None else labels[valid], y_pred.shape)
        labels = labels.astype(np.int64) if valid is None \
            else np.where(valid, labels, 0).astype(np.int64)
        return labels, y_pred, valid

    def _check_labels(self, labels, pred_shape):
        num_classes = pred_shape[-1]
        if labels.size == 0:
            return
        integral = labels.dtype.kind in "biu" or np.array_equal(labels, np.round(labels))
        if integral and labels.min() >= 0 and labels.max() < num_classes:
            return
        bad = labels[(labels != np.round(labels)) | (labels < 0) | (labels >= num_classes)]
        raise ValueError(f"{self._title()}: labels must be integers in [0, {num_classes}) "
                         f"for y_pred of shape {pred_shape}. Received label(s) "
                         f"{bad[:5].tolist()}")

    def _values(self, inputs, with_grad):
        labels, y_pred, valid = inputs
        if valid is not None:  # Keras zeroes the ignored rows before the loss
            y_pred = np.where(valid[..., None], y_pred, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            if not with_grad and not self.from_logits:
                values, local = _values_of_probabilities(labels, y_pred), None
            else:
                values, local = _categorical_crossentropy(np.eye(y_pred.shape[-1])[labels],
                                                          y_pred, self.from_logits, with_grad)
        if valid is not None:
            values = np.where(valid, values, 0.0)
            local = None if local is None else np.where(valid[..., None], local, 0.0)
        return values, local, valid

    def _fused_local_gradient(self, inputs):
        """y_pred - one_hot(labels): the softmax-and-crossentropy gradient per sample."""
        labels, y_pred, valid = inputs
        local = np.array(y_pred, order="C")
        local.reshape(-1)[_labelled_positions(labels, y_pred.shape[-1])] -= 1.0
        return local if valid is None else np.where(valid[..., None], local, 0.0)

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class}


class BinaryCrossentropy(_Crossentropy):
    """mean over the last axis of -(y log p + (1 - y) log(1 - p)), p clipped to
    [1e-7, 1 - 1e-7], or computed stably from logits; label_smoothing moves y toward 0.5."""

    fused_activation = "sigmoid"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="binary_crossentropy", dtype=None):
        super().__init__(from_logits, name, reduction, dtype)
        if axis != -1:
            raise ValueError(f"{type(self).__name__}: only axis=-1 is supported. "
                             f"Received: axis={axis!r}")
        self.label_smoothing = label_smoothing
        self.axis = axis

    def _prepared(self, y_true, y_pred):
        y_true, y_pred = self._aligned(y_true, y_pred)
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        return y_true, y_pred

    def _values(self, inputs, with_grad):
        return (*_binary_crossentropy(*inputs, self.from_logits, with_grad), None)

    def _fused_local_gradient(self, inputs):
        y_true, y_pred = inputs
        return (y_pred - y_true) / y_pred.shape[-1]

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing,
                "axis": self.axis}


class LossFunctionWrapper(Loss):
    """A user function fn(y_true, y_pred) -> per-sample losses, reduced as Keras does.
    Its gradient is not known here: forward_backward raises TypeError (the training
    loop differentiates such losses through pylayers.ops instead)."""

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", "loss"), reduction=reduction,
                         dtype=dtype)
        self.fn = fn
        self._fn_kwargs = kwargs

    def _compute(self, y_true, y_pred, with_grad):
        if with_grad:
            raise TypeError(f"{self._title()}: the gradient of the user loss function "
                            f"{self.fn!r} is not available to forward_backward")
        y_true, y_pred = squeeze_or_expand_to_same_rank(np.asarray(y_true),
                                                        np.asarray(y_pred))
        return np.asarray(self.fn(y_true, y_pred, **self._fn_kwargs), np.float64), None, None

    def get_config(self):
        return {**super().get_config(), "fn": getattr(self.fn, "__name__", repr(self.fn)),
                **self._fn_kwargs}


# ---- Keras' function forms: per-sample losses (float32), no reduction -------------------

def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    return CategoricalCrossentropy(from_logits, label_smoothing, axis,
                                   reduction="none")(y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None,
                                    axis=-1):
    return SparseCategoricalCrossentropy(from_logits, ignore_class, reduction="none",
                                         axis=axis)(y_true, y_pred)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    return BinaryCrossentropy(from_logits, label_smoothing, axis,
                              reduction="none")(y_true, y_pred)


def mean_squared_error(y_true, y_pred):
    return MeanSquaredError(reduction="none")(y_true, y_pred)


def mean_absolute_error(y_true, y_pred):
    return MeanAbsoluteError(reduction="none")(y_true, y_pred)


def huber(y_true, y_pred, delta=1.0):
    return Huber(delta, reduction="none")(y_true, y_pred)


def kl_divergence(y_true, y_pred):
    return KLDivergence(reduction="none")(y_true, y_pred)


def hinge(y_true, y_pred):
    return Hinge(reduction="none")(y_true, y_pred)


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
kld = KLD = kl_divergence
bce = BCE = binary_crossentropy
