"""pylayers: Keras-compatible neural networks for the CPU with compiled kernels.

`import pylayers as keras` gives the Keras 3 names: Sequential, Model, Input, Layer,
layers, ops, activations, initializers, regularizers, constraints, optimizers, losses,
metrics, callbacks, datasets, utils, backend. Submodules load on first use."""
import importlib
import warnings

from pylayers._kernels._runtime import (get_kernel_path, get_num_threads, openmp_enabled,
                                        set_kernel_path, set_num_threads)

if not openmp_enabled():
    warnings.warn("pylayers was built without OpenMP: every kernel runs on one thread. "
                  "Reinstall with a compiler that supports OpenMP (gcc, or clang with libomp) "
                  "for multi-threaded speed.", RuntimeWarning, stacklevel=2)

__version__ = "0.1.0"

_SUBMODULES = {"activations", "backend", "callbacks", "config", "constraints", "datasets",
               "distribute", "initializers", "layers", "losses", "metrics", "models", "ops",
               "optimizers", "regularizers", "saving", "testing", "utils"}
_NAMES = {"Sequential": "pylayers.models", "Model": "pylayers.models",
          "Input": "pylayers.layers", "Layer": "pylayers.layers", "Variable": "pylayers.ops"}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"pylayers.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'pylayers' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBMODULES | set(_NAMES))


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
