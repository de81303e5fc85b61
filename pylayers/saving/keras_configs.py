"""Configs written by Keras 3 or Keras 2 / tf.keras, made into configs pylayers takes.

Keras writes settings pylayers has no argument for (`quantization_config`, `lora_rank`,
`synchronized`, Keras 2's `ragged`, `time_major`, ...). A setting is dropped when its
value is one pylayers behaves identically under (the default, or a pure performance
hint); any other value raises a ValueError naming the layer and the setting, so a model
never loads with different semantics. The arguments a class takes are read from the
`__init__` signatures along its MRO (following `**kwargs` up to Layer), so layers added
later are covered without entries here."""
import inspect

ANY = object()   # every value of the setting is harmless to drop

# Keras settings pylayers has no argument for -> the values that make dropping them exact.
DROPPABLE_SETTINGS = {
    "quantization_config": (None,), "lora_rank": (None, 0), "lora_alpha": (None,),
    "lora_enabled": (False,), "ragged": (False,), "optional": (False,),
    "synchronized": (False,), "input_axes": (None,), "output_axes": (None,),
    "renorm": (False,), "renorm_clipping": (None,), "renorm_momentum": ANY,
    "virtual_batch_size": (None,), "adjustment": (None,), "fused": ANY,
    "time_major": (False,), "implementation": ANY, "use_cudnn": ANY, "unroll": ANY,
    "input_length": ANY, "shared_object_id": ANY, "build_config": ANY,
}
# Object entries (initializers, regularizers, constraints): keys of the entry itself.
ENTRY_KEYS = ("module", "class_name", "config", "registered_name", "shared_object_id",
              "build_config", "compile_config", "name", "inbound_nodes")
NESTED_KINDS = {"_initializer": "initializers", "_regularizer": "regularizers",
                "_constraint": "constraints"}
FLOAT32_POLICIES = (None, "float32")


class UnsupportedSetting(ValueError):
    """A Keras setting pylayers cannot honour."""


def accepted_arguments(cls):
    """The keyword arguments `cls(**config)` takes (an RNN layer built around a
    `cell_class` also forwards that cell's arguments)."""
    from pylayers.layers.layer import _LAYER_KWARGS, Layer
    cell_class = getattr(cls, "cell_class", None)
    names = accepted_arguments(cell_class) if cell_class is not None else set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(vars(klass)["__init__"]).parameters.values()
        names |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if klass is Layer:
            return names | _LAYER_KWARGS
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            return names
    return names


def _single_axis(config):
    """Keras 2 writes a normalization layer's built axis as a list ([3]); Keras 3 an int."""
    axis = config.get("axis")
    if isinstance(axis, list) and len(axis) == 1:
        config = dict(config, axis=axis[0])
    return config


# Per-class rewrites of Keras 2 values into the form Keras 3 (and pylayers) take.
CLASS_REWRITES = {"BatchNormalization": _single_axis}


def translate_config(cls, config, owner):
    """`config` restricted to what `cls` accepts; `owner` names the object in errors."""
    config = CLASS_REWRITES.get(cls.__name__, dict)(config)
    accepted = accepted_arguments(cls)
    computes_in_float32 = cls.__name__ != "InputLayer"   # an Input may hold int indices
    translated = {}
    for key, value in config.items():
        if key == "dtype" and computes_in_float32:
            value = _dtype_name(value, owner)
        elif key.endswith(tuple(NESTED_KINDS)) and isinstance(value, dict) and "class_name" in value:
            value = translate_nested_object(key, value, owner)
        if key in accepted:
            translated[key] = value
        elif not _droppable(key, value):
            raise UnsupportedSetting(f"{owner} uses the Keras setting {key}={value!r}, which "
                                     "pylayers does not support")
    return translated


def _droppable(key, value):
    allowed = DROPPABLE_SETTINGS.get(key)
    return allowed is ANY or (allowed is not None and value in allowed)


def _dtype_name(dtype, owner):
    """A DTypePolicy dict (Keras 3) or a name; layers compute in float32 only."""
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name")
    if dtype not in FLOAT32_POLICIES:
        raise UnsupportedSetting(f"{owner} uses the Keras setting dtype={dtype!r}; pylayers "
                                 "layers compute in float32 only")
    return dtype


def translate_nested_object(key, entry, owner):
    """An initializer/regularizer/constraint entry with its config restricted to the
    arguments of the pylayers class of that name (unknown classes are left for the
    layer to report)."""
    import importlib
    kind = next(k for suffix, k in NESTED_KINDS.items() if key.endswith(suffix))
    classes = importlib.import_module(f"pylayers.{kind}").ALL_OBJECTS_DICT
    cls = classes.get(entry["class_name"])
    if cls is None:
        return entry
    config = translate_config(cls, entry.get("config") or {}, f"{owner} ({key})")
    return {"class_name": entry["class_name"], "config": config}


def layer_owner(entry):
    name = (entry.get("config") or {}).get("name") or entry.get("name")
    return f"layer '{name}' ({entry.get('class_name')})"


# ---- Keras 2 functional graphs ------------------------------------------------------------

def is_keras2_node(node):
    """Keras 2 writes a node as [[layer_name, node_index, tensor_index, kwargs], ...]."""
    return isinstance(node, list)


def keras3_node(node):
    """A Keras 2 node as Keras 3's {"args": [...], "kwargs": {}}."""
    tensors = [{"class_name": "__keras_tensor__",
                "config": {"keras_history": [name, node_index, tensor_index]}}
               for name, node_index, tensor_index, *_ in node]
    return {"args": [tensors] if len(tensors) > 1 else tensors, "kwargs": {}}


def keras3_graph_config(config):
    """A functional config with Keras 2 nodes and single-element input/output lists
    rewritten as Keras 3 writes them (Keras 3 configs are returned unchanged)."""
    layers = config.get("layers", [])
    if not any(is_keras2_node(node) for entry in layers for node in entry.get("inbound_nodes", [])):
        return config
    converted = dict(config)
    converted["layers"] = [dict(entry, inbound_nodes=[keras3_node(n) for n in entry.get("inbound_nodes", [])])
                           for entry in layers]
    for key in ("input_layers", "output_layers"):
        refs = config[key]
        if isinstance(refs[0], list) and len(refs) == 1:
            converted[key] = refs[0]
    return converted


# ---- compile arguments --------------------------------------------------------------------

# Optimizer settings Keras writes that pylayers' optimizers do not take.
OPTIMIZER_DROPPABLE = {"use_ema": (False,), "ema_overwrite_frequency": (None,),
                       "loss_scale_factor": (None,), "gradient_accumulation_steps": (None,),
                       "jit_compile": ANY, "is_legacy_optimizer": (False,),
                       "decay": (None, 0, 0.0)}


def translate_optimizer(entry):
    """An optimizer entry (Keras 3 or Keras 2) with its config restricted to what the
    pylayers optimizer takes; names and unknown classes pass through."""
    from pylayers.optimizers import ALL_OPTIMIZERS
    if not isinstance(entry, dict):
        return entry
    cls = ALL_OPTIMIZERS.get(str(entry.get("class_name")).lower())
    if cls is None:
        return entry
    config = {}
    for key, value in (entry.get("config") or {}).items():
        if key in accepted_arguments(cls):
            config[key] = value
        elif not (OPTIMIZER_DROPPABLE.get(key) is ANY or value in OPTIMIZER_DROPPABLE.get(key, ())):
            raise UnsupportedSetting(f"optimizer '{config.get('name', cls.__name__)}' uses the "
                                     f"Keras setting {key}={value!r}, which pylayers does not support")
    return {"class_name": cls.__name__, "config": config}


def _metric_name(metric):
    """A metric of a Keras 2 training_config as the name compile() takes."""
    if isinstance(metric, dict):
        config = metric.get("config") or {}
        return config.get("name") or metric.get("class_name")
    return metric


def _legacy_metrics(metrics):
    """Keras 2 writes metrics per output ([[...]]); a single output's list is unwrapped."""
    if isinstance(metrics, list) and len(metrics) == 1 and isinstance(metrics[0], list):
        metrics = metrics[0]
    if isinstance(metrics, list):
        return [_metric_name(m) for m in metrics]
    if isinstance(metrics, dict):
        return {k: _legacy_metrics(v) for k, v in metrics.items()}
    return metrics


def compile_args_from_training_config(training_config):
    """The compile config of a legacy file's training_config."""
    return {"optimizer": translate_optimizer(training_config.get("optimizer_config")),
            "loss": training_config.get("loss"),
            "metrics": _legacy_metrics(training_config.get("metrics")),
            "loss_weights": training_config.get("loss_weights")}


def training_config(compile_config):
    """The legacy training_config of a Keras 3 compile config."""
    optimizer = compile_config["optimizer"]
    config = {key: value for key, value in compile_config.items() if key != "optimizer"}
    config["optimizer_config"] = ({"class_name": optimizer["class_name"], "config": optimizer["config"]}
                                  if isinstance(optimizer, dict) else optimizer)
    return config
