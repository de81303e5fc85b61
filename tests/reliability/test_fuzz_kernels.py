"""Fuzzing the compiled entry points (pylayers._kernels) in a child process: every call
with bad shapes, dtypes, None, non-contiguous, unaligned, read-only, zero-size or NaN
arguments either raises ValueError/TypeError or returns the float64 numpy answer, and
never crashes the process. A new kernel module's functions join ENTRIES or fail here."""
import importlib
import itertools
import pkgutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pylayers._kernels
from isolation import run_cases
from kernel_calls import ENTRIES, MUTATIONS

# Public kernel functions that take no arrays (run-time settings, tested in
# tests/test_build.py and below), so have nothing to fuzz.
NOT_ARRAY_KERNELS = {"_runtime.get_kernel_path", "_runtime.set_kernel_path",
                     "_runtime.get_num_threads", "_runtime.set_num_threads",
                     "_runtime.openmp_enabled", "_runtime.detected_kernel_path",
                     "conv.set_direct_path", "conv.set_winograd"}
DIMS = [(3, 5, 4), (1, 1, 1), (0, 2, 3), (2, 0, 3), (2, 3, 0), (37, 19, 70)]
ACTS = [0, 1, 2, 3, 4]


def public_kernel_functions():
    names = set()
    for info in pkgutil.iter_modules(pylayers._kernels.__path__):
        module = importlib.import_module(f"pylayers._kernels.{info.name}")
        names |= {f"{info.name}.{name}" for name, obj in vars(module).items()
                  if not name.startswith("_") and callable(obj) and not isinstance(obj, type)
                  and getattr(obj, "__module__", None) == module.__name__}
    return names


def test_every_kernel_function_is_fuzzed():
    assert public_kernel_functions() - set(ENTRIES) - NOT_ARRAY_KERNELS == set()


def check_outcomes(results):
    wrong = [r for r in results if r["outcome"] == "wrong"]
    assert not wrong, f"{len(wrong)} wrong answers, first: {wrong[:3]}"
    refused = [r for r in results if r["mutation"] in ("valid", "nan") and r["outcome"] != "ok"]
    assert not refused, f"valid inputs refused: {refused[:3]}"


def sweep_cases():
    """Every entry x mutation x array argument x shape family, deterministic."""
    cases = []
    for seed, (entry, mutation, dims) in enumerate(itertools.product(sorted(ENTRIES), MUTATIONS, DIMS)):
        for arg in range(10 if mutation != "valid" else 1):
            cases.append({"entry": entry, "dims": list(dims), "act": ACTS[seed % len(ACTS)],
                          "beta": (0.0, 0.5)[seed % 2], "mutation": mutation, "arg": arg,
                          "seed": seed * 10 + arg})
    return cases


def test_kernel_sweep_never_crashes_or_answers_wrong():
    results = run_cases("kernel_calls.py", sweep_cases())
    check_outcomes(results)


dim = st.one_of(st.integers(0, 4), st.integers(5, 80))
case = st.fixed_dictionaries({
    "entry": st.sampled_from(sorted(ENTRIES)), "dims": st.lists(dim, min_size=3, max_size=3),
    "act": st.sampled_from(ACTS), "beta": st.sampled_from([0.0, 0.5]),
    "mutation": st.sampled_from(MUTATIONS), "arg": st.integers(0, 9),
    "seed": st.integers(0, 2 ** 32 - 1)})


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(case, min_size=50, max_size=50))
def test_random_kernel_calls_never_crash_or_answer_wrong(cases):
    check_outcomes(run_cases("kernel_calls.py", cases))


@pytest.mark.parametrize("value", [0, -1, 2 ** 31, 1.5, "2", None])
def test_thread_count_rejects_bad_values(value):
    previous = pylayers.get_num_threads()
    try:
        with pytest.raises((ValueError, TypeError, OverflowError)):
            pylayers.set_num_threads(value)
    finally:
        pylayers.set_num_threads(previous)
    assert pylayers.get_num_threads() == previous
