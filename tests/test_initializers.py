"""pylayers.initializers against Keras 3: distributions, fans, seeds, names and configs."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from pylayers import initializers
from pylayers.utils import set_random_seed

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "init" /
                        "keras_reference.json").read_text())
CONV_SHAPE = (3, 3, 64, 32)  # fan_in 576, fan_out 288
DRAW_SHAPE = (400, 500)
TRUNCATION_STDDEV = 0.87962566103423978


# ---- fans ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, fans", REFERENCE["fans"])
def test_compute_fans_matches_keras(shape, fans):
    assert initializers.compute_fans(tuple(shape)) == tuple(fans)


def test_compute_fans_with_explicit_axes():
    assert initializers.compute_fans((2, 3, 5, 7), input_axes=(0, 1),
                                     output_axes=(2, 3)) == (6, 35)


# ---- distributions ---------------------------------------------------------------------

VARIANCE_SCALING_CASES = [  # initializer, distribution, variance it must give
    (initializers.GlorotUniform(seed=1), "uniform", 2.0 / (576 + 288)),
    (initializers.HeUniform(seed=2), "uniform", 2.0 / 576),
    (initializers.LecunUniform(seed=3), "uniform", 1.0 / 576),
    (initializers.GlorotNormal(seed=4), "truncated_normal", 2.0 / (576 + 288)),
    (initializers.HeNormal(seed=5), "truncated_normal", 2.0 / 576),
    (initializers.LecunNormal(seed=6), "truncated_normal", 1.0 / 576),
    (initializers.VarianceScaling(3.0, "fan_out", "uniform", seed=7), "uniform", 3.0 / 288),
    (initializers.VarianceScaling(0.5, "fan_avg", "untruncated_normal", seed=8),
     "untruncated_normal", 0.5 / 432),
]


@pytest.mark.parametrize("initializer, distribution, variance", VARIANCE_SCALING_CASES)
def test_variance_scaling_distributions(initializer, distribution, variance):
    values = initializer(CONV_SHAPE)
    assert values.shape == CONV_SHAPE and values.dtype == np.float32
    stddev = math.sqrt(variance)
    assert abs(values.mean()) < 0.02 * stddev
    assert values.std() == pytest.approx(stddev, rel=0.02)
    if distribution == "uniform":
        limit = math.sqrt(3 * variance)
        assert np.abs(values).max() <= limit
        assert np.abs(values).max() > 0.999 * limit
    elif distribution == "truncated_normal":
        bound = 2 * stddev / TRUNCATION_STDDEV
        assert np.abs(values).max() <= bound * (1 + 1e-6)
        assert np.abs(values).max() > 0.99 * bound
    else:
        assert np.abs(values).max() > 3 * stddev


def test_glorot_uniform_dense_limit():
    values = initializers.GlorotUniform(seed=0)((784, 64))
    limit = math.sqrt(6 / (784 + 64))
    assert np.abs(values).max() <= limit and np.abs(values).max() > 0.99 * limit


def test_random_normal_mean_and_stddev():
    values = initializers.RandomNormal(mean=1.5, stddev=0.3, seed=0)(DRAW_SHAPE)
    assert values.mean() == pytest.approx(1.5, abs=0.002)
    assert values.std() == pytest.approx(0.3, rel=0.01)
    assert np.abs(values - 1.5).max() > 4 * 0.3


def test_random_uniform_bounds():
    values = initializers.RandomUniform(minval=-1.0, maxval=3.0, seed=0)(DRAW_SHAPE)
    assert values.min() >= -1.0 and values.max() <= 3.0
    assert values.mean() == pytest.approx(1.0, abs=0.01)
    assert values.std() == pytest.approx(4 / math.sqrt(12), rel=0.01)


def test_truncated_normal_is_cut_at_two_stddev():
    values = initializers.TruncatedNormal(mean=-2.0, stddev=0.5, seed=0)(DRAW_SHAPE)
    assert values.min() >= -3.0 and values.max() <= -1.0
    assert values.mean() == pytest.approx(-2.0, abs=0.002)
    assert values.std() == pytest.approx(0.5 * TRUNCATION_STDDEV, rel=0.01)


def test_default_arguments_are_keras():
    assert initializers.RandomUniform().get_config() == {"seed": None, "minval": -0.05,
                                                         "maxval": 0.05}
    assert initializers.RandomNormal().get_config() == {"seed": None, "mean": 0.0,
                                                        "stddev": 0.05}
    assert initializers.TruncatedNormal().get_config()["stddev"] == 0.05
    assert initializers.Orthogonal().gain == 1.0
    assert initializers.Constant().value == 0.0


def test_dtype_defaults_to_float32_and_follows_the_argument():
    assert initializers.GlorotUniform()((3, 4)).dtype == np.float32
    assert initializers.Zeros()((2,)).dtype == np.float32
    assert initializers.HeNormal()((3, 4), dtype="float64").dtype == np.float64
    assert initializers.Ones()((2,), dtype="int32").dtype == np.int32


# ---- orthogonal, identity, constants ---------------------------------------------------

@pytest.mark.parametrize("shape", [(6, 6), (10, 4), (4, 10), (3, 3, 4, 8)])
def test_orthogonal_has_orthonormal_rows_or_columns(shape):
    values = initializers.Orthogonal(gain=2.0, seed=0)(shape).astype(np.float64)
    assert values.shape == shape
    matrix = values.reshape(-1, shape[-1]) / 2.0
    gram = matrix.T @ matrix if matrix.shape[0] >= matrix.shape[1] else matrix @ matrix.T
    np.testing.assert_allclose(gram, np.eye(len(gram)), atol=1e-6)


@pytest.mark.parametrize("shape", [(7, 5), (5, 7)])
def test_orthogonal_applies_the_sign_fix(shape):
    """Q is signed so that R = Q^T A has a positive diagonal, A the normal draws (made by
    a generator seeded with the initializer's seed, shape (max, min) as in Keras)."""
    seed = 11
    draws = np.random.default_rng(seed).standard_normal((max(shape), min(shape)))
    q = initializers.Orthogonal(seed=seed)(shape).astype(np.float64)
    q = q if shape[0] >= shape[1] else q.T
    r = q.T @ draws
    np.testing.assert_allclose(np.tril(r, -1), 0, atol=1e-5)
    assert (np.diag(r) > 0).all()


def test_orthogonal_rejects_rank_one():
    with pytest.raises(ValueError, match=r"at least two-dimensional.*shape=\(3,\)"):
        initializers.Orthogonal()((3,))


def test_identity_matches_keras_and_rejects_other_ranks():
    np.testing.assert_array_equal(initializers.Identity(2.0)((2, 3)),
                                  REFERENCE["identity_2x3_gain_2"])
    with pytest.raises(ValueError, match="2D matrices"):
        initializers.Identity()((3, 3, 3))


def test_zeros_ones_constant():
    np.testing.assert_array_equal(initializers.Zeros()((2, 3)), np.zeros((2, 3)))
    np.testing.assert_array_equal(initializers.Ones()((4,)), np.ones(4))
    np.testing.assert_array_equal(initializers.Constant(2.5)((2, 2)), np.full((2, 2), 2.5))
    np.testing.assert_array_equal(initializers.Constant([1.0, 2.0])((3, 2)),
                                  [[1, 2]] * 3)


def test_constant_config_holds_plain_numbers():
    assert initializers.Constant(np.float32(0.5)).get_config() == {"value": 0.5}
    assert json.dumps(initializers.Constant([1, 2]).get_config()) == '{"value": [1, 2]}'


def test_constant_array_config_round_trip():
    constant = initializers.Constant(np.array([1.0, 2.0]))
    config = constant.get_config()
    assert config["value"]["class_name"] == "__numpy__"
    rebuilt = initializers.Constant.from_config(json.loads(json.dumps(config)))
    np.testing.assert_array_equal(rebuilt((2,)), [1.0, 2.0])


# ---- seeds -----------------------------------------------------------------------------

RANDOM_CLASSES = [initializers.RandomNormal, initializers.RandomUniform,
                  initializers.TruncatedNormal, initializers.VarianceScaling,
                  initializers.GlorotUniform, initializers.GlorotNormal,
                  initializers.HeUniform, initializers.HeNormal, initializers.LecunUniform,
                  initializers.LecunNormal, initializers.Orthogonal]


@pytest.mark.parametrize("cls", RANDOM_CLASSES)
def test_seeded_initializer_repeats_itself_as_in_keras(cls):
    first = cls(seed=42)
    np.testing.assert_array_equal(first((5, 4)), first((5, 4)))
    np.testing.assert_array_equal(first((5, 4)), cls(seed=42)((5, 4)))
    assert not np.array_equal(first((5, 4)), cls(seed=43)((5, 4)))


@pytest.mark.parametrize("cls", RANDOM_CLASSES)
def test_unseeded_initializer_draws_its_seed_from_the_global_generator(cls):
    set_random_seed(7)
    first, second = cls(), cls()
    np.testing.assert_array_equal(first((5, 4)), first((5, 4)))  # Keras 3 does the same
    assert not np.array_equal(first((5, 4)), second((5, 4)))
    set_random_seed(7)
    np.testing.assert_array_equal(cls()((5, 4)), first((5, 4)))


def test_clone_keeps_an_explicit_seed_only():
    seeded = initializers.HeNormal(seed=5)
    np.testing.assert_array_equal(seeded.clone()((4, 4)), seeded((4, 4)))
    unseeded = initializers.HeNormal()
    assert unseeded.get_config()["seed"] is None
    assert not np.array_equal(unseeded.clone()((4, 4)), unseeded((4, 4)))


# ---- get, serialize, configs -----------------------------------------------------------

@pytest.mark.parametrize("name, expected", sorted(REFERENCE["initializer_names"].items()))
def test_get_by_name_matches_keras(name, expected):
    if expected is None:
        with pytest.raises(ValueError, match=f"Could not interpret initializer identifier: {name}"):
            initializers.get(name)
        return
    class_name, keras_config = expected
    found = initializers.get(name)
    assert type(found).__name__ == class_name
    config = {k: v for k, v in found.get_config().items() if k != "seed"}
    if class_name == "Identity":  # Keras' Identity forgets its gain; ours keeps it
        assert config == {"gain": 1.0}
    else:
        assert config == keras_config


def test_get_accepts_the_other_identifier_kinds():
    assert initializers.get(None) is None
    he = initializers.HeNormal()
    assert initializers.get(he) is he
    assert isinstance(initializers.get(initializers.Ones), initializers.Ones)

    def custom(shape, dtype=None):
        return np.full(shape, 3.0, dtype or "float32")

    assert initializers.get(custom) is custom
    assert isinstance(initializers.get("constant"), initializers.Constant)
    from_dict = initializers.get({"class_name": "RandomUniform",
                                  "config": {"minval": 0.0, "maxval": 1.0, "seed": 3}})
    assert from_dict.get_config() == {"seed": 3, "minval": 0.0, "maxval": 1.0}


def test_get_with_an_array_checks_the_shape():
    values = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(initializers.get(values)((2, 3)), values)
    with pytest.raises(ValueError, match=r"Expected `shape` to be \(2, 3\)"):
        initializers.get(values)((3, 2))


@pytest.mark.parametrize("identifier", [3, 2.5, {"class_name": "Nope", "config": {}},
                                        {"config": {}}])
def test_get_rejects_what_keras_rejects(identifier):
    with pytest.raises(ValueError, match="Could not interpret initializer identifier"):
        initializers.get(identifier)


@pytest.mark.parametrize("keras_serialized", [s for s in REFERENCE["serialized"]
                                              if s["module"] == "keras.initializers"])
def test_serialize_matches_keras_and_round_trips(keras_serialized):
    ours = initializers.deserialize(keras_serialized)
    assert initializers.serialize(ours) == keras_serialized


ALL_INITIALIZERS = [initializers.Zeros(), initializers.Ones(), initializers.Constant(1.5),
                    initializers.Identity(0.5), initializers.RandomNormal(1.0, 2.0, seed=1),
                    initializers.RandomUniform(-2.0, 2.0), initializers.TruncatedNormal(),
                    initializers.VarianceScaling(2.0, "fan_avg", "uniform", seed=4),
                    initializers.GlorotUniform(seed=1), initializers.HeNormal(),
                    initializers.LecunUniform(), initializers.Orthogonal(1.5, seed=2)]


@pytest.mark.parametrize("initializer", ALL_INITIALIZERS, ids=lambda i: type(i).__name__)
def test_config_round_trip_through_json(initializer):
    serialized = json.loads(json.dumps(initializers.serialize(initializer)))
    rebuilt = initializers.deserialize(serialized)
    assert type(rebuilt) is type(initializer)
    assert rebuilt.get_config() == initializer.get_config()


# ---- argument errors -------------------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda: initializers.VarianceScaling(scale=0), "scale=0"),
    (lambda: initializers.VarianceScaling(scale="big"), "scale='big'"),
    (lambda: initializers.VarianceScaling(mode="fan_sum"), "mode.*fan_sum"),
    (lambda: initializers.VarianceScaling(distribution="cauchy"), "distribution.*cauchy"),
    (lambda: initializers.RandomNormal(seed="a"), "seed='a'"),
    (lambda: initializers.RandomNormal(seed=-1), "seed=-1"),
    (lambda: initializers.RandomNormal(stddev=-1.0), "stddev=-1.0"),
    (lambda: initializers.RandomNormal(mean="zero"), "mean='zero'"),
    (lambda: initializers.RandomUniform(minval=1.0, maxval=0.0), "minval=1.0"),
    (lambda: initializers.TruncatedNormal(stddev=float("nan")), "stddev=nan"),
    (lambda: initializers.Orthogonal(gain="x"), "gain='x'"),
    (lambda: initializers.Constant("x"), "value='x'"),
])
def test_bad_arguments_raise_value_error_naming_them(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("shape", [(None, 3), (-1, 2), "ab", (2.5,), 4])
def test_bad_shapes_raise_value_error(shape):
    with pytest.raises(ValueError, match="shape="):
        initializers.GlorotUniform()(shape)


def test_normal_distribution_means_truncated_normal_as_in_keras():
    assert initializers.VarianceScaling(distribution="Normal").distribution == "truncated_normal"
