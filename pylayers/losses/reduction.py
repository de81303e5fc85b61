"""Keras 3's shape alignment and loss reduction (keras/src/losses/loss.py), written as
weights: the reduced loss is sum(values * W), so W is also d(loss)/d(values)."""
import numpy as np

REDUCTIONS = ("sum_over_batch_size", "sum", None, "none", "mean", "mean_with_sample_weight")


def standardize_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"Invalid value for argument `reduction`. Expected one of "
                         f"{REDUCTIONS}. Received: reduction={reduction!r}")
    return reduction


def squeeze_or_expand_to_same_rank(x1, x2, expand_rank_1=True):
    """Align ranks that differ by a trailing axis of size 1, as Keras does."""
    if x1.ndim == x2.ndim + 1 and x1.shape[-1] == 1:
        if x2.ndim == 1 and expand_rank_1:
            return x1, x2[..., None]
        return x1[..., 0], x2
    if x2.ndim == x1.ndim + 1 and x2.shape[-1] == 1:
        if x1.ndim == 1 and expand_rank_1:
            return x1[..., None], x2
        return x1, x2[..., 0]
    return x1, x2


def _aligned_sample_weight(owner, values_shape, sample_weight):
    """sample_weight shaped to broadcast over values: a scalar, or an array whose shape
    is a leading part of the values' shape (after Keras' squeeze/expand)."""
    weight = np.asarray(sample_weight, dtype=np.float64)
    values = np.empty(values_shape, dtype=bool)
    values, weight = squeeze_or_expand_to_same_rank(values, weight)
    if weight.ndim > values.ndim or weight.shape != values.shape[:weight.ndim]:
        raise ValueError(f"{owner}: sample_weight of shape {np.shape(sample_weight)} does "
                         f"not match the per-sample losses of shape {values_shape}")
    weight = weight.reshape(weight.shape + (1,) * (values.ndim - weight.ndim))
    return np.broadcast_to(weight, values.shape).reshape(values_shape)


def reduction_weights(owner, values_shape, sample_weight, mask, reduction):
    """W with the shape of the per-sample values such that loss = sum(values * W)."""
    weight = np.ones(values_shape) if sample_weight is None \
        else _aligned_sample_weight(owner, values_shape, sample_weight)
    if mask is not None:
        valid = int(np.count_nonzero(mask))
        if reduction in ("mean", "sum_over_batch_size"):
            scale = mask.size / valid if valid else 0.0
            weight = weight * np.where(mask, scale, 0.0)
        else:
            weight = weight * mask
    if values_shape in ((), (0,)) or reduction in ("sum", None, "none"):
        return weight
    if reduction == "mean_with_sample_weight" and (sample_weight is not None
                                                   or mask is not None):
        divisor = float(np.sum(weight))
    else:
        divisor = float(np.prod(values_shape))
    return weight / divisor if divisor else np.zeros(values_shape)
