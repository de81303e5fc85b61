"""Optimizers against float64 numpy references written from Keras 3's formulas
(keras/src/optimizers/*.py) and against trajectories recorded from real Keras."""
import math
import os
import warnings

import numpy as np
import pytest

import pylayers
from pylayers import optimizers
from pylayers.optimizers import schedules
from pylayers.ops.variable import Variable

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "optim")


# ---- float64 reference ---------------------------------------------------------------

class Reference:
    """Keras 3's update rules in float64, one dict of slots per variable."""

    def __init__(self, kind, learning_rate=None, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, **hyper):
        defaults = {"sgd": 0.01, "adam": 0.001, "adamw": 0.001, "rmsprop": 0.001,
                    "adagrad": 0.001}
        self.kind = kind
        self.lr = defaults[kind] if learning_rate is None else learning_rate
        self.weight_decay = 0.004 if kind == "adamw" and weight_decay is None else weight_decay
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.hyper = hyper
        self.t = 0
        self.slots = None

    def learning_rate(self):
        return self.lr(self.t) if callable(self.lr) else self.lr

    def clip(self, grads):
        if self.clipnorm:
            return [g * self.clipnorm / max(np.linalg.norm(g), self.clipnorm) for g in grads]
        if self.global_clipnorm:
            norm = math.sqrt(sum(np.sum(g * g) for g in grads))
            return [g * self.global_clipnorm / max(norm, self.global_clipnorm) for g in grads]
        if self.clipvalue:
            return [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    def step(self, weights, grads):
        if self.slots is None:
            start = self.hyper.get("initial_accumulator_value", 0.1) \
                if self.kind == "adagrad" else 0.0
            self.slots = [{"a": np.full_like(w, start), "b": np.zeros_like(w),
                           "c": np.zeros_like(w)} for w in weights]
        lr = self.learning_rate()
        new = []
        for w, g, s in zip(weights, self.clip(grads), self.slots):
            if self.weight_decay:
                w = w - w * self.weight_decay * lr
            new.append(getattr(self, "_" + self.kind.replace("adamw", "adam"))(w, g, s, lr))
        self.t += 1
        return new

    def _sgd(self, w, g, s, lr):
        mu = self.hyper.get("momentum", 0.0)
        if not mu:
            return w - lr * g
        s["a"] = mu * s["a"] - lr * g
        return w + (mu * s["a"] - lr * g if self.hyper.get("nesterov") else s["a"])

    def _adam(self, w, g, s, lr):
        b1, b2 = self.hyper.get("beta_1", 0.9), self.hyper.get("beta_2", 0.999)
        eps, t = self.hyper.get("epsilon", 1e-7), self.t + 1
        s["a"] += (g - s["a"]) * (1 - b1)
        s["b"] += (g * g - s["b"]) * (1 - b2)
        v = s["b"]
        if self.hyper.get("amsgrad"):
            s["c"] = np.maximum(s["c"], s["b"])
            v = s["c"]
        alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        return w - alpha * s["a"] / (np.sqrt(v) + eps)

    def _rmsprop(self, w, g, s, lr):
        rho, mu = self.hyper.get("rho", 0.9), self.hyper.get("momentum", 0.0)
        eps = self.hyper.get("epsilon", 1e-7)
        s["a"] = rho * s["a"] + (1 - rho) * g * g
        denominator = s["a"] + eps
        if self.hyper.get("centered"):
            s["c"] = rho * s["c"] + (1 - rho) * g
            denominator = s["a"] - s["c"] ** 2 + eps
        increment = lr * g / np.sqrt(denominator)
        if mu > 0:
            s["b"] = mu * s["b"] + increment
            increment = s["b"]
        return w - increment

    def _adagrad(self, w, g, s, lr):
        s["a"] += g * g
        return w - lr * g / np.sqrt(s["a"] + self.hyper.get("epsilon", 1e-7))


CASES = [
    ("sgd", {}),
    ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.8, "nesterov": True, "learning_rate": 0.05}),
    ("sgd", {"weight_decay": 0.1, "learning_rate": 0.1}),
    ("adam", {}),
    ("adam", {"amsgrad": True, "beta_1": 0.8, "epsilon": 1e-3}),
    ("adam", {"clipnorm": 0.5}),
    ("adamw", {"learning_rate": 0.01}),
    ("adamw", {"weight_decay": 0.1, "global_clipnorm": 1.0}),
    ("rmsprop", {}),
    ("rmsprop", {"momentum": 0.5}),
    ("rmsprop", {"centered": True, "rho": 0.8}),
    ("rmsprop", {"centered": True, "momentum": 0.3, "clipvalue": 0.2}),
    ("adagrad", {}),
    ("adagrad", {"initial_accumulator_value": 0.5, "learning_rate": 0.1}),
]
CLASSES = {"sgd": optimizers.SGD, "adam": optimizers.Adam, "adamw": optimizers.AdamW,
           "rmsprop": optimizers.RMSprop, "adagrad": optimizers.Adagrad}


def make_variables(rng, shapes):
    return [Variable(rng.normal(size=s), name=f"v{i}") for i, s in enumerate(shapes)]


def run_both(kind, config, shapes, steps, seed=0):
    """(pylayers weights, float64 reference weights) after `steps` identical steps."""
    rng = np.random.default_rng(seed)
    variables = make_variables(rng, shapes)
    reference_weights = [v.value.astype(np.float64) for v in variables]
    optimizer, reference = CLASSES[kind](**config), Reference(kind, **config)
    for _ in range(steps):
        grads = [rng.normal(size=s).astype(np.float32) for s in shapes]
        optimizer.apply(grads, variables)
        reference_weights = reference.step(reference_weights,
                                           [g.astype(np.float64) for g in grads])
    return [v.value for v in variables], reference_weights


def assert_close_relative(actual, expected, tolerance):
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=tolerance, atol=tolerance * np.abs(e).max())


@pytest.mark.parametrize("kind,config", CASES, ids=[f"{k}-{c}" for k, c in CASES])
@pytest.mark.parametrize("steps", [1, 10])
def test_update_matches_float64_reference(kind, config, steps):
    actual, expected = run_both(kind, config, [(7, 5), (5,), ()], steps)
    assert_close_relative(actual, expected, 1e-6 if steps == 1 else 1e-5)


LARGE_CASES = [("sgd", {"momentum": 0.9, "nesterov": True}), ("adam", {"amsgrad": True}),
               ("adamw", {"clipnorm": 1.0}), ("rmsprop", {"momentum": 0.5, "centered": True}),
               ("rmsprop", {}), ("adagrad", {"clipvalue": 0.5})]


@pytest.mark.parametrize("kind,config", LARGE_CASES)
def test_large_arrays_across_blocks_and_threads_match_reference(kind, config):
    # 120,000 and 1,500 elements: many 1024-element blocks with a ragged last one
    actual, expected = run_both(kind, config, [(300, 400), (1500,)], 3)
    assert_close_relative(actual, expected, 1e-5)


@pytest.mark.parametrize("kind,config", LARGE_CASES)
def test_result_does_not_depend_on_thread_count(kind, config):
    before = pylayers.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            pylayers.set_num_threads(threads)
            results.append(run_both(kind, config, [(256, 300)], 2)[0][0].copy())
    finally:
        pylayers.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])



@pytest.mark.parametrize("kind,config", CASES, ids=[f"{k}-{c}" for k, c in CASES])
@pytest.mark.parametrize("size", [6, 70_000])   # the calling thread alone; a team
def test_subnormal_slots_are_flushed_to_zero(kind, config, size):
    """A gradient that stays 0 decays the slots into subnormals, on which arithmetic is
    ~30x slower; the updates flush them to zero as TensorFlow does, and leave the calling
    thread's floating-point mode as they found it."""
    variable = Variable(np.ones(size, np.float32))
    optimizer = CLASSES[kind](**config)
    optimizer.build([variable])
    counters, slots = optimizer.variables[:2], optimizer.variables[2:]
    subnormal = np.float32(3e-39)
    optimizer.set_weights(counters + [np.full(s.shape, subnormal, np.float32) for s in slots])
    optimizer.apply([np.zeros(size, np.float32)], [variable])
    for slot in optimizer.variables[2:]:
        np.testing.assert_array_equal(slot, 0.0)
    assert np.all(np.isfinite(variable.value))
    assert subnormal * np.float32(0.5) > 0   # numpy in this thread still keeps subnormals

def load_keras_case(case):
    data = np.load(os.path.join(FIXTURES, "optimizers.npz"))
    initial = [data["initial_0"], data["initial_1"]]
    grads = [[data[f"grad_{s}_{i}"] for i in range(2)] for s in range(5)]
    expected = [[data[f"{case}_step{s}_{i}"] for i in range(2)] for s in range(5)]
    return initial, grads, expected


KERAS_CASES = {
    "sgd": lambda: optimizers.SGD(),
    "sgd_momentum": lambda: optimizers.SGD(momentum=0.9),
    "sgd_nesterov": lambda: optimizers.SGD(momentum=0.9, nesterov=True, learning_rate=0.05),
    "adam": lambda: optimizers.Adam(),
    "adam_amsgrad_clipnorm": lambda: optimizers.Adam(amsgrad=True, clipnorm=0.5),
    "adamw": lambda: optimizers.AdamW(learning_rate=0.01),
    "adamw_schedule": lambda: optimizers.AdamW(
        learning_rate=schedules.ExponentialDecay(0.01, 2, 0.5)),
    "rmsprop": lambda: optimizers.RMSprop(),
    "rmsprop_centered_momentum": lambda: optimizers.RMSprop(centered=True, momentum=0.5,
                                                            global_clipnorm=1.0),
    "adagrad_clipvalue": lambda: optimizers.Adagrad(learning_rate=0.1, clipvalue=0.3),
    "sgd_weight_decay": lambda: optimizers.SGD(weight_decay=0.1, learning_rate=0.1),
}


@pytest.mark.parametrize("case", sorted(KERAS_CASES))
def test_trajectory_matches_keras_fixture(case):
    initial, grads, expected = load_keras_case(case)
    variables = [Variable(w) for w in initial]
    optimizer = KERAS_CASES[case]()
    for step_grads, step_expected in zip(grads, expected):
        optimizer.apply(step_grads, variables)
        for variable, keras_value in zip(variables, step_expected):
            np.testing.assert_allclose(variable.value, keras_value, rtol=2e-6, atol=2e-7)


# ---- state, config, learning rate ----------------------------------------------------

def test_variables_follow_keras_order():
    rng = np.random.default_rng(1)
    variables = make_variables(rng, [(2, 3), (3,)])
    adam = optimizers.Adam(amsgrad=True)
    adam.apply([np.ones((2, 3)), np.ones(3)], variables)
    shapes = [a.shape for a in adam.variables]
    # iterations, learning_rate, then (m, v) per variable, then v_hat per variable
    assert shapes == [(), (), (2, 3), (2, 3), (3,), (3,), (2, 3), (3,)]
    assert int(adam.variables[0]) == 1 and adam.iterations == 1
    assert float(adam.variables[1]) == pytest.approx(0.001)
    rms = optimizers.RMSprop(momentum=0.5, centered=True)
    rms.build(variables)
    # all velocities, then all momentums, then all average gradients
    assert [a.shape for a in rms.variables][2:] == [(2, 3), (3,)] * 3
    schedule_adam = optimizers.Adam(schedules.ExponentialDecay(0.1, 10, 0.5))
    schedule_adam.build(variables)
    assert len(schedule_adam.variables) == 1 + 4


def test_set_weights_restores_state_exactly():
    rng = np.random.default_rng(2)
    shapes = [(4, 3), (3,)]
    grads = [[rng.normal(size=s) for s in shapes] for _ in range(4)]
    first, second = make_variables(rng, shapes), None
    original = optimizers.Adam(learning_rate=0.01)
    for g in grads[:2]:
        original.apply(g, first)
    second = [Variable(v.value.copy()) for v in first]
    restored = optimizers.Adam()
    restored.build(second)
    restored.set_weights([a.copy() for a in original.variables])
    assert restored.iterations == 2 and restored.learning_rate == pytest.approx(0.01)
    for g in grads[2:]:
        original.apply(g, first)
        restored.apply(g, second)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.value, b.value)
    with pytest.raises(ValueError, match="shape"):
        restored.set_weights([np.zeros(5)] + original.variables[1:])


@pytest.mark.parametrize("kind,config", CASES[::2])
def test_config_round_trip(kind, config):
    optimizer = CLASSES[kind](**config)
    config_out = optimizer.get_config()
    clone = CLASSES[kind].from_config(config_out)
    assert clone.get_config() == config_out
    for key, value in config.items():
        assert config_out[key] == pytest.approx(value)


def test_schedule_config_round_trip_is_keras_shaped():
    optimizer = optimizers.SGD(schedules.ExponentialDecay(0.1, 10, 0.5, staircase=True))
    config = optimizer.get_config()
    assert config["learning_rate"] == {
        "module": "keras.optimizers.schedules", "class_name": "ExponentialDecay",
        "config": {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5,
                   "staircase": True, "name": "ExponentialDecay"},
        "registered_name": None}
    assert optimizers.SGD.from_config(config).get_config() == config


def test_get_by_name_instance_and_config():
    assert isinstance(optimizers.get("Adam"), optimizers.Adam)
    assert isinstance(optimizers.get("rmsprop"), optimizers.RMSprop)
    assert isinstance(optimizers.get("ADAMW"), optimizers.AdamW)
    sgd = optimizers.SGD(momentum=0.5)
    assert optimizers.get(sgd) is sgd
    clone = optimizers.get(optimizers.serialize(sgd))
    assert isinstance(clone, optimizers.SGD) and clone.momentum == 0.5
    with pytest.raises(ValueError, match=r"'adamax'.*adagrad.*sgd"):
        optimizers.get("adamax")
    with pytest.raises(ValueError, match="identifier"):
        optimizers.get(3)


def test_default_names_follow_keras():
    assert optimizers.RMSprop().name.startswith("rm_sprop")
    assert optimizers.AdamW().name.startswith("adam_w")
    assert optimizers.SGD(name="mine").name == "mine"


def test_learning_rate_is_readable_and_settable():
    optimizer = optimizers.SGD(learning_rate=0.1)
    assert optimizer.learning_rate == pytest.approx(0.1)
    optimizer.learning_rate = 0.5
    variable = Variable(np.ones(3))
    optimizer.apply([np.ones(3)], [variable])
    np.testing.assert_allclose(variable.value, 0.5)
    scheduled = optimizers.SGD(learning_rate=schedules.InverseTimeDecay(1.0, 1, 1.0))
    with pytest.raises(TypeError, match="not settable"):
        scheduled.learning_rate = 0.1


def test_schedule_is_read_at_the_step_count_before_the_update():
    optimizer = optimizers.SGD(learning_rate=schedules.PiecewiseConstantDecay([1], [1.0, 0.1]))
    variable = Variable(np.zeros(1))
    moves = []
    for _ in range(3):
        before = variable.value.copy()
        optimizer.apply([np.ones(1)], [variable])
        moves.append(float(before[0] - variable.value[0]))
    np.testing.assert_allclose(moves, [1.0, 1.0, 0.1], rtol=1e-6)


@pytest.mark.parametrize("schedule,expected", [
    (schedules.ExponentialDecay(0.1, 4, 0.5), lambda s: 0.1 * 0.5 ** (s / 4)),
    (schedules.ExponentialDecay(0.1, 4, 0.5, staircase=True),
     lambda s: 0.1 * 0.5 ** (s // 4)),
    (schedules.InverseTimeDecay(0.1, 2, 0.5), lambda s: 0.1 / (1 + 0.5 * s / 2)),
    (schedules.InverseTimeDecay(0.1, 2, 0.5, staircase=True),
     lambda s: 0.1 / (1 + 0.5 * (s // 2))),
    (schedules.PiecewiseConstantDecay([2, 5], [1.0, 0.5, 0.1]),
     lambda s: 1.0 if s <= 2 else 0.5 if s <= 5 else 0.1),
    (schedules.CosineDecay(0.1, 8, alpha=0.2),
     lambda s: 0.1 * (0.8 * 0.5 * (1 + math.cos(math.pi * min(s, 8) / 8)) + 0.2)),
    (schedules.CosineDecay(0.0, 8, warmup_target=0.1, warmup_steps=4),
     lambda s: 0.1 * s / 4 if s < 4
     else 0.1 * 0.5 * (1 + math.cos(math.pi * min(s - 4, 8) / 8))),
    (schedules.PolynomialDecay(0.1, 5, end_learning_rate=0.01, power=2.0),
     lambda s: 0.09 * (1 - min(s, 5) / 5) ** 2 + 0.01),
])
def test_schedules_follow_keras_formulas(schedule, expected):
    for step in range(15):
        assert schedule(step) == pytest.approx(expected(step), rel=1e-12, abs=1e-15)
    clone = type(schedule).from_config(schedule.get_config())
    assert clone(7) == pytest.approx(schedule(7))


def test_schedule_arguments_are_validated():
    with pytest.raises(ValueError, match="decay_steps"):
        schedules.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="boundaries"):
        schedules.PiecewiseConstantDecay([1, 2], [1.0])


# ---- building, constraints, errors ---------------------------------------------------

def test_builds_lazily_and_rejects_other_variables():
    rng = np.random.default_rng(3)
    variables = make_variables(rng, [(2,), (3,)])
    optimizer = optimizers.Adam()
    assert not optimizer.built
    optimizer.apply([np.ones(2), np.ones(3)], variables)
    assert optimizer.built
    optimizer.apply([np.ones(2), np.ones(3)])  # the built variables
    stranger = Variable(np.ones(2), name="stranger")
    with pytest.raises(ValueError, match="stranger"):
        optimizer.apply([np.ones(2)], [stranger])
    assert optimizer.iterations == 2


def test_apply_without_variables_needs_build():
    with pytest.raises(ValueError, match="build"):
        optimizers.SGD().apply([np.ones(2)])


def test_bad_gradient_shape_changes_nothing():
    rng = np.random.default_rng(4)
    variables = make_variables(rng, [(2, 2), (3,)])
    before = [v.value.copy() for v in variables]
    optimizer = optimizers.Adam()
    with pytest.raises(ValueError, match=r"'v1'.*\(4,\).*\(3,\)"):
        optimizer.apply([np.ones((2, 2)), np.ones(4)], variables)
    with pytest.raises(ValueError, match="2 gradients for 1 variables"):
        optimizer.apply([np.ones((2, 2)), np.ones(3)], variables[:1])
    assert optimizer.iterations == 0 and not optimizer.built
    for b, v in zip(before, variables):
        np.testing.assert_array_equal(b, v.value)


def test_apply_gradients_takes_pairs():
    variable = Variable(np.ones(2))
    optimizer = optimizers.SGD(learning_rate=0.5)
    assert optimizer.apply_gradients(zip([np.ones(2)], [variable])) == 1
    np.testing.assert_allclose(variable.value, 0.5)


def test_constraint_applied_after_each_update():
    variable = Variable(np.array([1.0, -2.0]), constraint=lambda w: np.maximum(w, 0.0))
    optimizers.SGD(learning_rate=1.0).apply([np.array([-1.0, 1.0])], [variable])
    np.testing.assert_array_equal(variable.value, [2.0, 0.0])


def test_missing_gradient_is_skipped_with_warning():
    a, b = Variable(np.ones(2), name="a"), Variable(np.ones(2), name="b")
    optimizer = optimizers.SGD(learning_rate=1.0)
    with pytest.warns(UserWarning, match="'b'"):
        optimizer.apply([np.ones(2), None], [a, b])
    np.testing.assert_array_equal(a.value, 0.0)
    np.testing.assert_array_equal(b.value, 1.0)
    with pytest.raises(ValueError, match="No gradients"):
        optimizer.apply([None, None], [a, b])


def test_exclude_from_weight_decay_by_name():
    kernel, bias = Variable(np.ones(2), name="kernel"), Variable(np.ones(2), name="bias")
    optimizer = optimizers.SGD(learning_rate=0.5, weight_decay=0.2)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    optimizer.apply([np.zeros(2), np.zeros(2)], [kernel, bias])
    np.testing.assert_allclose(kernel.value, 0.9)
    np.testing.assert_allclose(bias.value, 1.0)
    with pytest.raises(ValueError, match="before the optimizer is built"):
        optimizer.exclude_from_weight_decay(var_names=["kernel"])


@pytest.mark.parametrize("kwargs,match", [
    ({"clipnorm": 1.0, "clipvalue": 1.0}, "Only one of"),
    ({"clipnorm": -1.0}, "clipnorm"),
    ({"learning_rate": "fast"}, "learning_rate"),
    ({"use_ema": True}, "use_ema"),
    ({"momentum": 1.5}, "momentum"),
    ({"bogus": 1}, "bogus"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimizers.SGD(**kwargs)


def test_adamw_requires_weight_decay():
    with pytest.raises(ValueError, match="weight_decay"):
        optimizers.AdamW(weight_decay=None)


def test_keras_saved_config_with_all_base_keys_loads():
    config = {"name": "adam", "learning_rate": 0.0010000000474974513, "weight_decay": None,
              "clipnorm": None, "global_clipnorm": None, "clipvalue": None, "use_ema": False,
              "ema_momentum": 0.99, "ema_overwrite_frequency": None, "loss_scale_factor": None,
              "gradient_accumulation_steps": None, "beta_1": 0.9, "beta_2": 0.999,
              "epsilon": 1e-07, "amsgrad": False}
    assert optimizers.Adam.from_config(config).get_config() == config


def test_kernel_rejects_mismatched_slot():
    from pylayers._kernels import optim as kernels
    w, g = np.ones(3, np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match="momentum has 2 elements"):
        kernels.sgd_update(w, g, np.zeros(2, np.float32), 0.1, 0.9, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kernels.sgd_update(np.ones(0, np.float32), np.ones(0, np.float32), None, 0.1, 0, False)


def adam_params(rng, sizes, amsgrad):
    """(w, g, m, v, vhat, grad_scale, clip_value, decay) per size, each with its own
    preprocessing, as Adam's step hands them to the fused kernel."""
    params = []
    for i, n in enumerate(sizes):
        w, g = rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32)
        m, v = rng.normal(size=n).astype(np.float32), rng.random(n).astype(np.float32)
        vhat = rng.random(n).astype(np.float32) if amsgrad else None
        params.append((w, g, m, v, vhat, 1.0 - 0.1 * i, 0.3 if i % 2 else 0.0, 0.01 * i))
    return params


def copied(params):
    return [tuple(a.copy() if isinstance(a, np.ndarray) else a for a in p) for p in params]


@pytest.mark.parametrize("amsgrad", [False, True])
def test_fused_adam_gives_each_variable_the_bits_of_its_own_update(amsgrad):
    """adam_update_all shares each large variable's 1024-element blocks between the
    threads (64 blocks and more: 70,000 and 65,536 elements) and the smaller ones'
    blocks together (a thread's share spans variables: sizes around the block and the
    parallel threshold, an empty one, small ones between and after the large ones);
    every element comes out as one adam_update per variable computes it, at 1, 2 and 3
    threads."""
    from pylayers._kernels import optim as kernels
    params = adam_params(np.random.default_rng(5), [1, 1023, 0, 1025, 70000, 3, 40000, 65536, 2049],
                          amsgrad)
    hyper = (1e-3, 0.9, 0.999, 1e-7)
    before = pylayers.get_num_threads()
    try:
        pylayers.set_num_threads(1)
        expected = copied(params)
        for w, g, m, v, vhat, scale, clip, decay in expected:
            kernels.adam_update(w, g, m, v, vhat, *hyper, grad_scale=scale, clip_value=clip,
                                decay=decay)
        for threads in (1, 2, 3):
            pylayers.set_num_threads(threads)
            fused = copied(params)
            kernels.adam_update_all(fused, *hyper)
            for got, want in zip(fused, expected):
                for a, b in zip(got[:5], want[:5]):
                    if a is not None:
                        np.testing.assert_array_equal(a, b)
    finally:
        pylayers.set_num_threads(before)


def test_fused_adam_checks_every_variable_before_updating_any():
    from pylayers._kernels import optim as kernels
    params = adam_params(np.random.default_rng(6), [5, 7], False)
    w0, g, m, v, vhat, *prep = params[1]
    params[1] = (w0, g, m[:3], v, vhat, *prep)
    untouched = copied(params)
    with pytest.raises(ValueError, match="momentum has 3 elements"):
        kernels.adam_update_all(params, 1e-3, 0.9, 0.999, 1e-7)
    for got, want in zip(params, untouched):
        for a, b in zip(got[:4], want[:4]):
            np.testing.assert_array_equal(a, b)


def test_fused_adam_refuses_an_unaligned_array_inside_its_list():
    """The arrays arrive inside a list of tuples: the alignment check looks in there too
    (the C loop would load the floats misaligned)."""
    from pylayers._kernels import optim as kernels
    params = adam_params(np.random.default_rng(7), [6, 5], False)
    raw = np.zeros(5 * 4 + 1, np.uint8)[1:].view(np.float32)   # 5 floats, one byte off
    assert not raw.flags.aligned
    w, g, m, v, vhat, *prep = params[1]
    params[1] = (w, raw, m, v, vhat, *prep)
    untouched = copied(params)
    with pytest.raises(ValueError, match="adam_update_all: .* not aligned"):
        kernels.adam_update_all(params, 1e-3, 0.9, 0.999, 1e-7)
    for got, want in zip(params, untouched):
        np.testing.assert_array_equal(got[0], want[0])


def test_a_step_like_the_last_reuses_its_checked_updates_and_sees_every_change():
    """apply keeps a step's checked updates for the next step with the very same arrays:
    each step still gives the float64 result, and a value replaced by a new array, a new
    clipvalue, a gradient array of another shape or a constraint added in between all
    take effect."""
    rng = np.random.default_rng(11)
    variables = [Variable(rng.standard_normal((4, 3)), name="w"),
                 Variable(rng.standard_normal(3), name="b")]
    grads = [rng.standard_normal((4, 3)).astype(np.float32),
             rng.standard_normal(3).astype(np.float32)]
    opt = optimizers.SGD(learning_rate=0.1)

    def step_expect(clip=None):
        expected = [v.value.astype(np.float64) - 0.1 * (np.clip(g, -clip, clip) if clip else g)
                    for v, g in zip(variables, grads)]
        opt.apply(grads, variables)
        return expected

    for _ in range(2):   # the second step reuses the first's updates
        for v, want in zip(variables, step_expect()):
            np.testing.assert_allclose(v.value, want, rtol=1e-6)
    assert opt._kept_updates is not None
    old = variables[0].value
    variables[0].value = old * 2.0   # another array
    for v, want in zip(variables, step_expect()):
        np.testing.assert_allclose(v.value, want, rtol=1e-6)
    np.testing.assert_array_equal(old * 2.0 - 0.1 * grads[0], variables[0].value)
    opt.clipvalue = 0.05
    for v, want in zip(variables, step_expect(clip=0.05)):
        np.testing.assert_allclose(v.value, want, rtol=1e-6)
    variables[1].constraint = lambda w: np.zeros_like(w)
    opt.apply(grads, variables)
    np.testing.assert_array_equal(variables[1].value, 0.0)
    grads[1] = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="gradient for variable 'b' has shape \\(4,\\)"):
        opt.apply(grads, variables)


def test_adam_steps_the_arrays_of_each_step_through_its_kept_call():
    """Adam converts its C call's arguments once and keeps them while the base class hands
    out the same checked updates. Against an Adam that converts them afresh every step:
    the same bits over steps with the same arrays, after a variable's value is replaced
    by a new array (the new one is stepped, the old one left alone) and after a gradient
    array is replaced."""
    rng = np.random.default_rng(12)
    shapes = [(300, 70), (70,)]
    values = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    pairs = []
    for _ in range(2):
        variables = [Variable(v.copy(), name=f"v{i}") for i, v in enumerate(values)]
        pairs.append((optimizers.Adam(learning_rate=0.01), variables))
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]

    def step():
        for kept, (opt, variables) in zip((True, False), pairs):
            if not kept:
                opt._kept_updates = None   # checked and converted afresh
            opt.apply(grads, variables)
        for a, b in zip(pairs[0][1], pairs[1][1]):
            np.testing.assert_array_equal(a.value, b.value)

    step()
    step()
    assert pairs[0][0]._kept_updates is not None
    old = pairs[0][1][0].value
    for _, variables in pairs:
        variables[0].value = variables[0].value * 0.5
    before = old.copy()
    step()
    np.testing.assert_array_equal(old, before)
    grads[0] = grads[0] * -2.0
    step()
    step()
