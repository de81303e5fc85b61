"""Losses: Keras 3's classes and function forms, each with `forward_backward` (value and
exact gradient) and, for the crossentropies, `fused_backward` through softmax/sigmoid.

`get(identifier)` returns a Loss object for a name, a Loss instance, one of the function
forms, a config dict, or any other callable (wrapped in LossFunctionWrapper)."""
from pylayers.losses.losses import (BCE, KLD, MAE, MSE, BinaryCrossentropy,
                                    CategoricalCrossentropy, Hinge, Huber, KLDivergence, Loss,
                                    LossFunctionWrapper, MeanAbsoluteError, MeanSquaredError,
                                    SparseCategoricalCrossentropy, bce,
                                    binary_crossentropy, categorical_crossentropy, hinge,
                                    huber, kl_divergence, kld, mae, mean_absolute_error,
                                    mean_squared_error, mse, sparse_categorical_crossentropy)

__all__ = ["Loss", "LossFunctionWrapper", "CategoricalCrossentropy",
           "SparseCategoricalCrossentropy", "BinaryCrossentropy", "MeanSquaredError",
           "MeanAbsoluteError", "Huber", "KLDivergence", "Hinge", "categorical_crossentropy",
           "sparse_categorical_crossentropy", "binary_crossentropy", "mean_squared_error",
           "mean_absolute_error", "huber", "kl_divergence", "hinge", "mse", "MSE", "mae",
           "MAE", "kld", "KLD", "bce", "BCE", "get", "resolve", "serialize", "deserialize"]

CLASSES = (CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossentropy,
           MeanSquaredError, MeanAbsoluteError, Huber, KLDivergence, Hinge)
FUNCTION_CLASSES = {categorical_crossentropy: CategoricalCrossentropy,
                    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
                    binary_crossentropy: BinaryCrossentropy,
                    mean_squared_error: MeanSquaredError,
                    mean_absolute_error: MeanAbsoluteError, huber: Huber,
                    kl_divergence: KLDivergence, hinge: Hinge}
ALIASES = {"mse": MeanSquaredError, "mae": MeanAbsoluteError, "kld": KLDivergence,
           "bce": BinaryCrossentropy, "kullback_leibler_divergence": KLDivergence,
           "huber_loss": Huber}
LOSSES_BY_NAME = {**{cls.__name__.lower(): cls for cls in CLASSES},
                  **{fn.__name__: cls for fn, cls in FUNCTION_CLASSES.items()}, **ALIASES}


def serialize(loss):
    return {"module": "keras.losses", "class_name": type(loss).__name__,
            "config": loss.get_config(), "registered_name": None}


def _class_named(name):
    cls = LOSSES_BY_NAME.get(str(name).lower())
    if cls is None:
        raise ValueError(f"Unknown loss: {name!r}. Known losses: {sorted(LOSSES_BY_NAME)}")
    return cls


def deserialize(config, custom_objects=None):
    class_name = config.get("class_name")
    known = custom_objects or {}
    cls = known[class_name] if class_name in known else _class_named(class_name)
    return cls.from_config(config.get("config", {}))


def get(identifier):
    """A Loss object (with forward_backward) for `identifier`; None stays None."""
    if identifier is None or isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        return _class_named(identifier)()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if identifier in FUNCTION_CLASSES:
        return FUNCTION_CLASSES[identifier]()
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier):
        return LossFunctionWrapper(identifier)
    raise ValueError(f"Could not interpret loss identifier: {identifier!r}. Known losses: "
                     f"{sorted(LOSSES_BY_NAME)}")


def resolve(identifier, y_true_shape, y_pred_shape):
    """compile()'s loss resolution: 'crossentropy'/'ce' pick binary, sparse or
    categorical crossentropy from the shapes (Keras' compile_utils.get_loss); anything
    else goes through get()."""
    if str(identifier).lower() not in ("crossentropy", "ce"):
        return get(identifier)
    is_binary = y_pred_shape[-1] == 1
    is_sparse = len(y_true_shape) < len(y_pred_shape) \
        or (y_true_shape[-1] == 1 and y_pred_shape[-1] > 1)
    if is_binary:
        return BinaryCrossentropy()
    return SparseCategoricalCrossentropy() if is_sparse else CategoricalCrossentropy()
