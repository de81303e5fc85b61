"""Kernel functions that check the alignment of their operands themselves
(require_aligned, cheaper on calls made many times a step) instead of through the
wrappers' Python check (_refuse_unaligned): each array operand, made unaligned, is
refused with a ValueError naming the function and the operand, before anything is
written. (The fuzzer cannot tell: on x86 an unaligned float still loads.)"""
import numpy as np
import pytest

from kernel_calls import ENTRIES, array_paths, mutate

SELF_CHECKING = ["dense.dense_forward", "conv.conv_forward", "conv.conv_backward_data",
                 "conv.conv_backward_weight", "conv.conv_backward_weight_fused",
                 "conv.bias_act_backward", "pooling.max_pool_forward",
                 "pooling.max_pool_backward", "pooling.avg_pool_forward",
                 "pooling.avg_pool_backward"]


def valid_args(entry):
    """Arguments of a non-empty call, with every optional array present."""
    return ENTRIES[entry][0](np.random.default_rng(0), 3, 5, 5, {"act": 1, "beta": 0.0})


CASES = [(entry, path) for entry in SELF_CHECKING for path in array_paths(valid_args(entry))]


@pytest.mark.parametrize("entry, path", CASES, ids=[f"{e}-arg{p[0]}" for e, p in CASES])
def test_an_unaligned_operand_is_refused_by_name_before_anything_is_written(entry, path):
    function = ENTRIES[entry][2]
    assert not hasattr(function, "__wrapped__")   # no Python wrapper checks it instead
    args = mutate(valid_args(entry), "unaligned", path, np.random.default_rng(1))
    assert not args[path[0]].flags.aligned
    before = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    with pytest.raises(ValueError, match=f"{entry.split('.')[1]}: received \\w+ whose data "
                                         "is not aligned"):
        function(*args)
    for got, kept in zip(args, before):
        if isinstance(got, np.ndarray):
            np.testing.assert_array_equal(got, kept)
