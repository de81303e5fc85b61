"""Optimizer base class: Keras 3's apply loop (keras/src/optimizers/base_optimizer.py)
around one fused C update per variable (csrc/optim.c).

One step of `apply(grads, variables)`, as Keras does it:
  1. gradients are clipped (clipnorm per variable, or global_clipnorm, or clipvalue);
  2. decoupled weight decay w -= w * weight_decay * lr (unless excluded);
  3. the optimizer's update of its slots and of w;
  4. each variable's constraint, w = constraint(w);
  5. iterations += 1.
Steps 1-3 run inside one C loop per variable; the learning rate is read once per step
(a schedule sees the iterations before the increment). Steps 3-5 are not interrupted
by Ctrl-C: a SIGINT arriving meanwhile is delivered when the step is complete, so an
interrupted fit leaves the weights of its last completed step, never half-updated."""
import contextlib
import math
import operator
import re
import signal
import threading
import warnings
from typing import NamedTuple

import numpy as np

try:   # signal's functions without the enum conversions that make a call pair cost 15 us
    import _signal as raw_signal
except ImportError:   # pragma: no cover (every CPython has it)
    raw_signal = signal

from pylayers._kernels import optim as kernels
from pylayers.backend import auto_name
from pylayers.optimizers import schedules


@contextlib.contextmanager
def _sigint_deferred():
    """Hold back SIGINT inside the block (main thread only: Python runs signal handlers
    there, and only there may install them); on leaving, restore the previous handler
    and hand it any SIGINT that arrived (the default handler raises KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread() \
            or raw_signal.getsignal(signal.SIGINT) is None:   # a handler not set from Python
        yield
        return
    arrived = []
    try:
        previous = raw_signal.signal(signal.SIGINT,
                                     lambda signum, frame: arrived.append(frame))
    except (ValueError, TypeError, OSError):   # e.g. a sub-interpreter: nothing to defer
        yield
        return
    try:
        yield
    finally:
        raw_signal.signal(signal.SIGINT, previous)
    if arrived:
        if callable(previous):
            previous(signal.SIGINT, arrived[0])
        elif previous == signal.SIG_DFL:
            raise KeyboardInterrupt


# Keras options pylayers accepts only at their default value (configs saved by Keras
# carry them all).
UNSUPPORTED_DEFAULTS = {"use_ema": False, "ema_overwrite_frequency": None,
                        "loss_scale_factor": None, "gradient_accumulation_steps": None}




def _is_number(value):
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)


def _check_optional_positive(owner, argument, value):
    if value is not None and (not _is_number(value) or value < 0):
        raise ValueError(f"{owner}: argument `{argument}` must be a non-negative float or "
                         f"None. Received: {argument}={value!r}")


_VALUE = operator.attrgetter("value")


class _KeptUpdates(NamedTuple):
    """A step's checked updates (Optimizer._step_updates) and what they were made from."""
    clipvalue: object
    grads: list
    variables: list
    values: list
    updates: list


class Optimizer:
    """Base of SGD, Adam, AdamW, RMSprop, Adagrad. Subclasses define `_slot_groups()`
    (the names of their per-variable state, in Keras' creation order) and
    `_update(index, w, g, lr, prep)` (one C kernel call on flat float32 views), or
    `_update_all(updates, lr, alongside)` for all variables of a step at once."""

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None, ema_momentum=0.99, **kwargs):
        owner = type(self).__name__
        self._reject_unsupported(owner, kwargs)
        for argument, value in (("weight_decay", weight_decay), ("clipnorm", clipnorm),
                                ("clipvalue", clipvalue), ("global_clipnorm", global_clipnorm)):
            _check_optional_positive(owner, argument, value)
        if sum(value is not None for value in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can "
                             f"be set. Received: clipnorm={clipnorm}, clipvalue={clipvalue}, "
                             f"global_clipnorm={global_clipnorm}")
        self.name = name or auto_name(owner)
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.ema_momentum = ema_momentum
        self._learning_rate = self._checked_learning_rate(learning_rate)
        self._iterations = 0
        self._trainable_variables = []
        self._variable_index = {}
        self._slots = {}
        self._flat_slots = {}
        self._slot_order = []
        self._excluded_ids = set()
        self._excluded_pattern = None
        self._kept_updates = None
        self.built = False

    @staticmethod
    def _reject_unsupported(owner, kwargs):
        for argument, default in UNSUPPORTED_DEFAULTS.items():
            value = kwargs.pop(argument, default)
            if value != default:
                raise ValueError(f"{owner}: `{argument}={value!r}` is not supported by "
                                 f"pylayers (only {argument}={default!r}).")
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.")
        if kwargs:
            raise ValueError(f"{owner}: argument(s) not recognized: {kwargs}")

    def _checked_learning_rate(self, learning_rate):
        if callable(learning_rate):  # a LearningRateSchedule or a function of no argument
            return learning_rate
        if not _is_number(learning_rate):
            raise ValueError(f"{type(self).__name__}: argument `learning_rate` should be "
                             "float, or an instance of LearningRateSchedule, or a callable "
                             "(that takes in the current iteration value and returns the "
                             "corresponding learning rate value). Received instead: "
                             f"learning_rate={learning_rate!r}")
        return np.float32(learning_rate)

    # ---- learning rate and iterations -------------------------------------------------

    @property
    def learning_rate(self):
        """The learning rate this step uses, as a float (a schedule evaluated at
        `iterations`)."""
        if isinstance(self._learning_rate, schedules.LearningRateSchedule):
            return float(self._learning_rate(self._iterations))
        if callable(self._learning_rate):
            return float(self._learning_rate())
        return float(self._learning_rate)

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        if not callable(learning_rate) \
                and isinstance(self._learning_rate, schedules.LearningRateSchedule):
            raise TypeError("This optimizer was created with a `LearningRateSchedule` object "
                            "as its `learning_rate` constructor argument, hence its learning "
                            "rate is not settable. If you need the learning rate to be "
                            "settable, you should instantiate the optimizer with a float "
                            "`learning_rate` argument.")
        self._learning_rate = self._checked_learning_rate(learning_rate)

    @property
    def iterations(self):
        return self._iterations

    # ---- state ------------------------------------------------------------------------

    def _slot_groups(self):
        """Tuples of slot names; each tuple is created interleaved over the variables."""
        return []

    def _slot_initial_value(self, slot_name):
        return 0.0

    def _slot(self, name, index):
        """Flat view of slot `name` of variable `index`; None when this configuration
        keeps no such slot."""
        slots = self._flat_slots.get(name)
        return None if slots is None else slots[index]

    def build(self, variables):
        """Create the optimizer's state for `variables` (once; later calls do nothing)."""
        if self.built:
            return
        variables = list(variables)
        for variable in variables:
            self._check_is_variable(variable)
        self._trainable_variables = variables
        self._variable_index = {id(v): i for i, v in enumerate(variables)}
        self._slots = {}
        self._slot_order = []
        for group in self._slot_groups():
            for name in group:
                self._slots[name] = [None] * len(variables)
            for i, variable in enumerate(variables):
                for name in group:
                    self._slots[name][i] = np.full(variable.shape,
                                                   self._slot_initial_value(name), np.float32)
                    self._slot_order.append((name, i))
        # flat views of the same memory, made once (the step reads them every batch)
        self._flat_slots = {name: [array.reshape(-1) for array in arrays]
                            for name, arrays in self._slots.items()}
        self.built = True

    def _check_is_variable(self, variable):
        value = getattr(variable, "value", None)
        if not isinstance(value, np.ndarray) or value.dtype != np.float32 \
                or not value.flags.c_contiguous:
            raise TypeError(f"{self.name}: expected Variables holding C-contiguous float32 "
                            f"arrays. Received: {variable!r}")

    @property
    def variables(self):
        """The state as numpy arrays in Keras 3's order: iterations, the learning rate
        (unless it is a schedule), then the slots (live arrays)."""
        state = [np.array(self._iterations, dtype=np.int64)]
        if not callable(self._learning_rate):
            state.append(np.array(self._learning_rate, dtype=np.float32))
        if self.built:
            state.extend(self._slots[name][i] for name, i in self._slot_order)
        return state

    def set_weights(self, weights):
        """Restore `variables` (as returned by `variables`): shapes checked first."""
        if not self.built:
            raise ValueError(f"{self.name}: set_weights() needs a built optimizer; call "
                             "optimizer.build(trainable_variables) first.")
        current = self.variables
        if len(weights) != len(current):
            raise ValueError(f"{self.name}: expected {len(current)} arrays, received "
                             f"{len(weights)}")
        for i, (target, weight) in enumerate(zip(current, weights)):
            if np.shape(weight) != target.shape:
                raise ValueError(f"{self.name}: state array {i} has shape {target.shape}; "
                                 f"received shape {np.shape(weight)}")
        self._iterations = int(weights[0])
        if not callable(self._learning_rate):
            self._learning_rate = np.float32(weights[1])
        slot_weights = weights[len(weights) - len(self._slot_order):]
        for (name, i), weight in zip(self._slot_order, slot_weights):
            self._slots[name][i][...] = weight

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Skip weight decay for these variables, or for variables whose name contains
        one of `var_names`. Only before the optimizer is built."""
        if self.built:
            raise ValueError("`exclude_from_weight_decay()` can only be configured before "
                             "the optimizer is built.")
        self._excluded_ids = {id(v) for v in var_list or []}
        self._excluded_pattern = re.compile("|".join(set(var_names))) if var_names else None

    def _decays(self, variable):
        if self.weight_decay is None or id(variable) in self._excluded_ids:
            return False
        return self._excluded_pattern is None \
            or self._excluded_pattern.search(variable.name) is None

    # ---- the step ---------------------------------------------------------------------

    def apply_gradients(self, grads_and_vars):
        grads, variables = zip(*grads_and_vars)
        self.apply(list(grads), list(variables))
        return self._iterations

    def apply(self, grads, trainable_variables=None):
        """Update `trainable_variables` (built lazily on the first call) in place. Every
        gradient is checked before any state changes."""
        self._apply_alongside(grads, trainable_variables, None)

    def _apply_alongside(self, grads, trainable_variables, alongside):
        """apply, and alongside() (or None): work that reads none of the variables,
        gradients and slots, run on this thread while the update's other threads step
        the variables where the optimizer can (Adam), else just before the update. Its
        exception is raised once the step is complete."""
        grads = list(grads)
        if not grads:
            if alongside is not None:
                alongside()
            return
        variables = self._variables_for(grads, trainable_variables)
        learning_rate = self.learning_rate
        updates, stepped = self._step_updates(grads, variables, learning_rate)
        failed = []   # alongside's exception, raised once the step is complete

        def guarded():
            try:
                alongside()
            except BaseException as error:
                failed.append(error)
        with _sigint_deferred():
            self._update_all(updates, learning_rate, guarded if alongside else None)
            for variable in stepped:
                if variable.constraint is not None:
                    variable.value[...] = variable.constraint(variable.value)
            self._iterations += 1
        if failed:
            raise failed[0]

    def _step_updates(self, grads, variables, learning_rate):
        """(updates (index, flat value, flat gradient, prep) for _update_all, the
        variables they step), every gradient checked first. Kept and handed out again
        while a step passes the very same gradient arrays for the same variables holding
        the same arrays, with the same clipvalue: nothing the checks and the preps read
        can have changed then. Steps with weight decay or clipping by norm (their preps
        read the learning rate, the exclusions or the gradients' values) are not kept."""
        kept = self._kept_updates
        if kept is not None and kept.clipvalue == self.clipvalue \
                and len(grads) == len(kept.grads) \
                and all(map(operator.is_, grads, kept.grads)) \
                and all(map(operator.is_, variables, kept.variables)) \
                and all(map(operator.is_, map(_VALUE, variables), kept.values)):
            return kept.updates, kept.variables
        pairs = self._checked_pairs(grads, variables)
        self.build(variables)
        self._check_known(variables)
        scales = self._gradient_scales([g for g, _ in pairs])
        updates = []
        for (grad, variable), scale in zip(pairs, scales):
            decay = self.weight_decay * learning_rate if self._decays(variable) else 0.0
            prep = {"grad_scale": scale, "clip_value": self.clipvalue or 0.0, "decay": decay}
            updates.append((self._variable_index[id(variable)], variable.value.reshape(-1),
                            grad.reshape(-1), prep))
        as_given = len(pairs) == len(grads) and all(map(operator.is_, (g for g, _ in pairs),
                                                        grads))
        keep = as_given and not (self.weight_decay or self.clipnorm or self.global_clipnorm)
        self._kept_updates = _KeptUpdates(self.clipvalue, grads, list(variables),
                                          list(map(_VALUE, variables)), updates) if keep else None
        return updates, [variable for _, variable in pairs]

    def _variables_for(self, grads, trainable_variables):
        if trainable_variables is None:
            if not self.built:
                raise ValueError(f"{self.name}: when passing `grads` without `variables`, "
                                 "the optimizer must already be built. Call "
                                 "`optimizer.build(trainable_variables)` first.")
            variables = self._trainable_variables
        else:
            variables = list(trainable_variables)
        if len(grads) != len(variables):
            raise ValueError(f"{self.name}: received {len(grads)} gradients for "
                             f"{len(variables)} variables")
        return variables

    def _check_known(self, variables):
        unknown = [v for v in variables if id(v) not in self._variable_index]
        if unknown:
            raise ValueError(f"{self.name}: unknown variable(s) "
                             f"{[getattr(v, 'path', v) for v in unknown]}. This optimizer can "
                             "only be called for the variables it was built with "
                             f"({len(self._trainable_variables)} variables); create a new "
                             "optimizer for a new set of variables.")

    def _checked_pairs(self, grads, variables):
        """(float32 contiguous gradient, variable) pairs, None gradients dropped; every
        shape checked before anything is updated."""
        pairs, missing = [], []
        for grad, variable in zip(grads, variables):
            if grad is None:
                missing.append(variable.path)
                continue
            grad = np.asarray(grad, dtype=np.float32, order="C")
            if grad.shape != variable.shape:
                raise ValueError(f"{self.name}: gradient for variable '{variable.path}' has "
                                 f"shape {grad.shape}; the variable has shape "
                                 f"{variable.shape}")
            self._check_is_variable(variable)
            pairs.append((grad, variable))
        if not pairs:
            raise ValueError("No gradients provided for any variable.")
        if missing:
            warnings.warn(f"Gradients do not exist for variables {missing} when minimizing "
                          "the loss.")
        return pairs

    def _gradient_scales(self, grads):
        """The factor each gradient is multiplied by for clipnorm / global_clipnorm."""
        if self.clipnorm:
            return [self.clipnorm / max(math.sqrt(kernels.sum_squares(g.reshape(-1))),
                                        self.clipnorm) for g in grads]
        if self.global_clipnorm:
            norm = math.sqrt(sum(kernels.sum_squares(g.reshape(-1)) for g in grads))
            scale = self.global_clipnorm / max(norm, self.global_clipnorm) \
                if math.isfinite(norm) else math.nan
            return [scale] * len(grads)
        return [1.0] * len(grads)

    def _update(self, index, w, g, learning_rate, prep):
        raise NotImplementedError

    def _update_all(self, updates, learning_rate, alongside):
        """Every (index, w, g, prep) of one step, alongside() first; an optimizer with a
        fused kernel over all variables overrides this."""
        if alongside is not None:
            alongside()
        for index, w, g, prep in updates:
            self._update(index, w, g, learning_rate, prep)

    # ---- config -----------------------------------------------------------------------

    def get_config(self):
        if isinstance(self._learning_rate, schedules.LearningRateSchedule):
            learning_rate = schedules.serialize(self._learning_rate)
        else:
            learning_rate = self.learning_rate
        return {"name": self.name, "learning_rate": learning_rate,
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue,
                "use_ema": False, "ema_momentum": self.ema_momentum,
                "ema_overwrite_frequency": None, "loss_scale_factor": None,
                "gradient_accumulation_steps": None}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"],
                                                            custom_objects)
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, learning_rate={self.learning_rate}>"
