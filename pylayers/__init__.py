"""pylayers: Keras-compatible neural networks for the CPU with compiled kernels."""
from pylayers._kernels._runtime import (get_kernel_path, get_num_threads, openmp_enabled,
                                        set_kernel_path, set_num_threads)

__version__ = "0.1.0"


def show_config(print_it=True):
    """The build and run-time facts: kernel path, OpenMP, thread count."""
    from pylayers._kernels._runtime import detected_kernel_path
    facts = {"version": __version__, "kernel_path": get_kernel_path(),
             "detected_kernel_path": detected_kernel_path(),
             "openmp": openmp_enabled(), "num_threads": get_num_threads()}
    if print_it:
        for key, value in facts.items():
            print(f"{key}: {value}")
    return facts
