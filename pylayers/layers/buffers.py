"""Large arrays a layer hands out again on the next training step instead of allocating
them anew. A fresh multi-megabyte array costs page faults on first touch and an munmap
(with a TLB shoot-down across the OpenMP threads) when freed, which for a conv layer
costs as much as the arithmetic. An array is reused only when nothing else refers to
it: not the caller, not a view, not the previous step's pending backprop."""
import math
import sys

import numpy as np

MIN_BYTES = 1 << 18   # smaller arrays come from numpy's allocator as cheaply as from here

def _references(array):
    return sys.getrefcount(array)


def _references_when_free():
    """What `_references` counts, from inside empty_buffer, for an array the cache alone
    holds: measured the same way rather than assumed (interpreters differ in which of
    their own references they count)."""
    cache = {"probe": np.empty(1)}
    array = cache.get("probe")
    return _references(array)


_UNREFERENCED = _references_when_free()


def empty_buffer(layer, role, shape, dtype=np.float32):
    """np.empty(shape, dtype), reusing the array `layer` made for `role` last time when
    it is free and of the same shape and dtype. The array is bound to a name before its
    references are counted, so two threads asking at once each see the other's name
    and neither takes it twice."""
    shape = tuple(shape)
    if math.prod(shape) * (4 if dtype is np.float32 else np.dtype(dtype).itemsize) < MIN_BYTES:
        return np.empty(shape, dtype)
    cache = layer.__dict__.setdefault("_buffers", {})
    array = cache.get(role)
    if array is not None and _references(array) == _UNREFERENCED and array.shape == shape \
            and array.dtype == dtype:
        return array
    array = np.empty(shape, dtype)
    cache[role] = array
    return array


def remembered(layer, role, key, compute):
    """compute(), worked out again only when `key` (e.g. the input shape) differs from
    the key of `layer`'s previous call for `role`: per-call geometry without the Python
    arithmetic on every step."""
    cache = layer.__dict__.setdefault("_remembered", {})
    entry = cache.get(role)
    if entry is None or entry[0] != key:
        entry = cache[role] = (key, compute())
    return entry[1]
