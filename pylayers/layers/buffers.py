"""Large arrays a layer hands out again on the next training step instead of allocating
them anew. A fresh multi-megabyte array costs page faults on first touch and an munmap
(with a TLB shoot-down across the OpenMP threads) when freed, which for a conv layer
costs as much as the arithmetic. An array is reused only when nothing else refers to
it: not the caller, not a view, not the previous step's pending backprop."""
import math
import sys

import numpy as np

MIN_BYTES = 1 << 18   # smaller arrays come from numpy's allocator as cheaply as from here
ALIGN_BYTES = 64      # a cache line: rows split between threads share no line at a
                      # 64-byte boundary, and vectors of 16 floats load from one line


def aligned_empty(shape, dtype=np.float32):
    """np.empty(shape, dtype) starting on a cache line (numpy's own large arrays start 16
    bytes into one): a view of a slightly larger byte array, its `base`, which every
    further view of it also holds."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + ALIGN_BYTES, np.uint8)
    start = -raw.ctypes.data % ALIGN_BYTES
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def _references(array):
    return sys.getrefcount(array)


def _counts(array):
    """(references to array, references to its base): any view of array holds its base
    (numpy points a view of a view at the owner), not array."""
    base = array.base
    return _references(array), _references(base)


def _counts_when_free():
    """What `_counts` gives, from inside empty_buffer, for an array the cache alone holds:
    measured the same way rather than assumed (interpreters differ in which of their own
    references they count)."""
    cache = {"probe": aligned_empty((1,))}
    array = cache.get("probe")
    return _counts(array)


_FREE = _counts_when_free()


def empty_buffer(layer, role, shape, dtype=np.float32):
    """np.empty(shape, dtype), reusing the array `layer` made for `role` last time when
    it is free and of the same shape and dtype; large arrays start on a cache line. The
    array is bound to a name before its references are counted, so two threads asking
    at once each see the other's name and neither takes it twice."""
    shape = tuple(shape)
    if math.prod(shape) * (4 if dtype is np.float32 else np.dtype(dtype).itemsize) < MIN_BYTES:
        return np.empty(shape, dtype)
    cache = layer.__dict__.setdefault("_buffers", {})
    array = cache.get(role)
    if array is not None and array.shape == shape and array.dtype == dtype \
            and _counts(array) == _FREE:
        return array
    array = aligned_empty(shape, dtype)
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
