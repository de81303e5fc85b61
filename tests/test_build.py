"""The build: OpenMP must be compiled in on CI; elsewhere its absence is reported."""
import os
import warnings

import pylayers


def test_openmp_enabled_in_ci():
    if os.environ.get("CI"):
        assert pylayers.openmp_enabled(), "CI build has no OpenMP: kernels run on one thread"
    elif not pylayers.openmp_enabled():
        warnings.warn("pylayers was built without OpenMP: every kernel runs on one thread")


def test_config_reports_kernel_path_and_threads():
    config = pylayers.show_config(print_it=False)
    assert config["kernel_path"] in ("generic", "avx2", "avx512")
    assert config["num_threads"] >= 1
    assert config["openmp"] == pylayers.openmp_enabled()
