"""`pylayers.config`: process-wide switches, named as Keras 3's `keras.config` names
its own (`enable_traceback_filtering()`, `disable_...()`, `is_..._enabled()`).

Keras has no numerics check of its own (TensorFlow's is `tf.debugging.enable_check_numerics`);
pylayers' `enable_check_numerics()` makes `fit`, `evaluate`, `predict` and the
`*_on_batch` methods refuse inputs or targets holding NaN or infinity with a ValueError
naming the model, the array and its shape, before any weight changes."""
import numpy as np

_state = {"check_numerics": False}


def enable_check_numerics():
    """Refuse NaN/inf in the data given to a model (off by default: one pass over it)."""
    _state["check_numerics"] = True


def disable_check_numerics():
    _state["check_numerics"] = False


def is_check_numerics_enabled():
    return _state["check_numerics"]


def check_finite(arrays, where):
    """When check_numerics is enabled: raise ValueError if a floating array in `arrays`
    (an array, or a list/tuple/dict of them, None skipped) holds NaN or infinity.
    `where` names the caller, e.g. "Model 'sequential': x"."""
    if not _state["check_numerics"]:
        return
    if isinstance(arrays, dict):
        items = [(f"{where}[{key!r}]", a) for key, a in arrays.items()]
    elif isinstance(arrays, (list, tuple)):
        items = [(f"{where}[{i}]" if len(arrays) > 1 else where, a)
                 for i, a in enumerate(arrays)]
    else:
        items = [(where, arrays)]
    for name, array in items:
        if array is None:
            continue
        array = np.asarray(array)
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            bad = np.argwhere(~np.isfinite(array))
            first = tuple(int(i) for i in bad[0])
            raise ValueError(f"{name} contains NaN/inf ({len(bad)} of {array.size} values, "
                             f"first at index {first}: {array[first]}); shape {array.shape}. "
                             "pylayers.config.disable_check_numerics() turns this check off.")
