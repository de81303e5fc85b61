"""A Sequential model's inference as a flat list of compiled calls, made once per input
shape. Each layer that can offers a step: a call into its kernel with the geometry
worked out and the output buffer allocated when the plan is made, reading the weights
at call time. A layer without one runs its own `_infer`. A predict call then does no
shape arithmetic, no buffer lookups and no backprop bookkeeping."""
import itertools
import threading
from typing import Callable, NamedTuple, Optional

import numpy as np

from pylayers._kernels.dense import DenseChain
from pylayers.layers.buffers import aligned_empty


class InferenceStep(NamedTuple):
    """run(x, out) -> y for C-contiguous float32 x of the shape the step was made for;
    out is a float32 array of output_shape when `writes`, else None (y a view of x).
    A Dense layer's step is a dense_link instead, (name, kernel Variable, bias Variable
    or None, activation code, alpha), with run None: the plan joins consecutive links
    into one DenseChain call."""
    run: Optional[Callable]
    output_shape: tuple
    writes: bool = True
    dense_link: Optional[tuple] = None


def view_step(output_shape):
    """A step that only reshapes (Flatten, Reshape) or passes x on (Dropout)."""
    return InferenceStep(lambda x, out: x.reshape(output_shape), tuple(output_shape), False)


def _own_infer_step(layer, compiled_next):
    """The layer's own `_infer`, its output made C-contiguous float32 when a compiled
    step reads it next."""
    if compiled_next:
        return lambda x, out: np.ascontiguousarray(layer._infer(x), dtype=np.float32)
    return lambda x, out: layer._infer(x)


def make_plan(layers, input_shape):
    """The InferencePlan of `layers` for inputs of input_shape; None when a layer
    without a step gives no concrete output shape."""
    steps, shape = [], tuple(input_shape)
    for layer in layers:
        step = layer._inference_step(shape)
        steps.append((layer, step))
        shape = step.output_shape if step else tuple(layer.compute_output_shape(shape))
        if any(d is None for d in shape):
            return None
    steps = _chain_dense_links(steps)
    last_writer = max((i for i, (_, s) in enumerate(steps) if s and s.writes), default=-1)
    calls = []
    for i, (layer, step) in enumerate(steps):
        if step is None:
            compiled_next = i + 1 < len(steps) and steps[i + 1][1] is not None
            calls.append((_own_infer_step(layer, compiled_next), None, None))
        elif not step.writes:
            calls.append((step.run, None, None))
        elif i == last_writer:
            calls.append((step.run, None, step.output_shape))   # a new array each call
        else:
            calls.append((step.run, aligned_empty(step.output_shape), None))
    only_views_after = all(s is not None and not s.writes for _, s in steps[last_writer + 1:])
    return InferencePlan(calls, output_is_new=last_writer >= 0 and only_views_after)


def _chain_dense_links(steps):
    """(layer, step) pairs with each run of consecutive dense links made one DenseChain
    step, paired with the run's first layer."""
    def is_link(pair):
        return pair[1] is not None and pair[1].dense_link is not None

    joined = []
    for links, run in itertools.groupby(steps, key=is_link):
        run = list(run)
        if not links:
            joined += run
            continue
        rows = run[0][1].output_shape[0]
        chain = DenseChain([step.dense_link for _, step in run], rows, aligned_empty)
        joined.append((run[0][0], InferenceStep(chain.run, chain.output_shape)))
    return joined


class InferencePlan:
    """Calls (run, buffer, fresh_shape): each step's run with the plan's own buffer, or
    with a new array of fresh_shape (the last writing step, so that no output aliases a
    buffer of the plan), or with None. One call runs at a time: `run` returns None when
    another thread is inside (the caller then takes the layer-by-layer path).
    output_is_new: every output is (a view of) an array made for that call alone."""

    def __init__(self, calls, output_is_new):
        self._calls = calls
        self.output_is_new = output_is_new
        self._lock = threading.Lock()

    def run(self, x):
        if not self._lock.acquire(blocking=False):
            return None
        try:
            for run, buffer, fresh_shape in self._calls:
                x = run(x, buffer if fresh_shape is None else np.empty(fresh_shape, np.float32))
            return x
        finally:
            self._lock.release()
