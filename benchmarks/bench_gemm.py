"""pylayers matmul vs numpy.matmul (OpenBLAS), side by side per shape.

    pytest benchmarks/bench_gemm.py --benchmark-only --benchmark-group-by=group

Each shape is one benchmark group holding both libraries, so the report shows them
next to each other.  Thread counts follow the environment (PYLAYERS_NUM_THREADS,
OMP_NUM_THREADS, OPENBLAS_NUM_THREADS); benchmarks/gemm_report.py prints GFLOP/s."""
import numpy as np
import pytest

from gemm_report import CASES, gflops, operands
from pylayers._kernels.gemm import matmul

LIBRARIES = {"pylayers": matmul, "numpy": np.matmul}


@pytest.mark.parametrize("library", list(LIBRARIES))
@pytest.mark.parametrize("case", CASES, ids=[label.replace(" ", "") for _, label, _, _ in CASES])
def test_matmul(benchmark, case, library):
    group, label, shape, layout = case
    a, b = operands(shape, layout)
    benchmark.group = f"{group}: {label}"
    benchmark.extra_info["gflop"] = 2.0 * np.prod(shape) / 1e9
    result = benchmark(LIBRARIES[library], a, b)
    assert result.shape == (shape[0], shape[2])
    benchmark.extra_info["gflops_median"] = gflops(shape, benchmark.stats.stats.median)
