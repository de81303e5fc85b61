"""Session state shared by all layers: default-name counters (dense, dense_1, ...)."""
import collections
import re
import threading

_lock = threading.Lock()
_name_counts = collections.defaultdict(int)


def unique_name(prefix):
    """prefix, then prefix_1, prefix_2, ... (Keras' default naming)."""
    with _lock:
        count = _name_counts[prefix]
        _name_counts[prefix] += 1
    return prefix if count == 0 else f"{prefix}_{count}"


def snake_case(class_name):
    """Keras' to_snake_case: Conv2D -> conv2d, MaxPooling2D -> max_pooling2d, GRUCell -> gru_cell."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def auto_name(class_name):
    """The default name of an object of this class: snake_case, then _1, _2, ..."""
    return unique_name(snake_case(class_name))


def clear_session():
    """Reset default-name counters, as keras.backend.clear_session() does."""
    with _lock:
        _name_counts.clear()


def floatx():
    return "float32"


def epsilon():
    return 1e-7
