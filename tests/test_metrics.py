"""Metrics: results against Keras-made fixtures (two weighted/unweighted batches each),
numpy references for the running mean, compile-time resolution and errors."""
import os

import numpy as np
import pytest

from pylayers import metrics

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "optim")
METRIC_DATA = np.load(os.path.join(FIXTURES, "metrics.npz"))

# case -> our metric (same class and arguments as tests/fixtures/make_optim_fixtures.py)
KERAS_CASES = {
    "accuracy": lambda: metrics.Accuracy(),
    "binary_accuracy": lambda: metrics.BinaryAccuracy(),
    "binary_accuracy_03": lambda: metrics.BinaryAccuracy(threshold=0.3),
    "categorical_accuracy": lambda: metrics.CategoricalAccuracy(),
    "sparse_categorical_accuracy": lambda: metrics.SparseCategoricalAccuracy(),
    "sparse_categorical_accuracy_column": lambda: metrics.SparseCategoricalAccuracy(),
    "top_k": lambda: metrics.TopKCategoricalAccuracy(k=2),
    "sparse_top_k": lambda: metrics.SparseTopKCategoricalAccuracy(k=2),
    "precision": lambda: metrics.Precision(),
    "precision_thresholds": lambda: metrics.Precision(thresholds=[0.3, 0.6]),
    "precision_top_k": lambda: metrics.Precision(top_k=2),
    "recall": lambda: metrics.Recall(),
    "recall_class_id": lambda: metrics.Recall(class_id=1),
    "f1_none": lambda: metrics.F1Score(),
    "f1_micro": lambda: metrics.F1Score(average="micro"),
    "f1_macro_threshold": lambda: metrics.F1Score(average="macro", threshold=0.4),
    "f1_weighted": lambda: metrics.F1Score(average="weighted"),
    "auc": lambda: metrics.AUC(),
    "auc_pr": lambda: metrics.AUC(curve="PR"),
    "auc_50_minoring": lambda: metrics.AUC(num_thresholds=50, summation_method="minoring"),
    "auc_thresholds": lambda: metrics.AUC(thresholds=[0.2, 0.5, 0.7]),
    "mae": lambda: metrics.MeanAbsoluteError(),
    "mse": lambda: metrics.MeanSquaredError(),
}


def keras_batches(case):
    for b in range(2):
        weight_key = f"{case}/sample_weight{b}"
        weight = METRIC_DATA[weight_key] if weight_key in METRIC_DATA.files else None
        yield METRIC_DATA[f"{case}/y_true{b}"], METRIC_DATA[f"{case}/y_pred{b}"], weight


@pytest.mark.parametrize("case", sorted(KERAS_CASES))
def test_result_matches_keras(case):
    metric = KERAS_CASES[case]()
    for y_true, y_pred, weight in keras_batches(case):
        metric.update_state(y_true, y_pred, sample_weight=weight)
    expected = METRIC_DATA[f"{case}/result"]
    np.testing.assert_allclose(metric.result(), expected, rtol=1e-5, atol=1e-6)
    metric.reset_state()
    for y_true, y_pred, weight in keras_batches(case):
        metric.update_state(y_true, y_pred, sample_weight=weight)
    np.testing.assert_allclose(metric.result(), expected, rtol=1e-5, atol=1e-6)


def test_fixture_covers_weighted_batches():
    assert "auc/sample_weight1" in METRIC_DATA.files
    assert "auc/sample_weight0" not in METRIC_DATA.files


def test_mean_is_the_weighted_running_mean():
    mean = metrics.Mean()
    mean.update_state(np.array([1.0, 2.0, 3.0]))
    mean.update_state(np.array([[4.0, 6.0], [0.0, 2.0]]), sample_weight=np.array([0.5, 2.0]))
    # second batch: per-sample means 5 and 1, weights 0.5 and 2
    expected = (1 + 2 + 3 + 0.5 * 5 + 2 * 1) / (3 + 2.5)
    assert mean.result() == pytest.approx(expected, rel=1e-12)
    mean.update_state(7.0)
    assert mean.result() == pytest.approx((expected * 5.5 + 7) / 6.5, rel=1e-12)
    mean.reset_state()
    assert mean.result() == 0.0


def test_call_updates_and_returns_result():
    accuracy = metrics.BinaryAccuracy()
    assert accuracy(np.array([[1.0], [0.0]]), np.array([[0.7], [0.6]])) == pytest.approx(0.5)
    assert accuracy(np.array([[1.0]]), np.array([[0.9]])) == pytest.approx(2 / 3)


def test_auc_matches_exact_roc_area_on_separable_scores():
    auc = metrics.AUC(num_thresholds=1000)
    auc.update_state(np.array([0, 0, 1, 1, 0, 1]), np.array([0.1, 0.35, 0.4, 0.8, 0.5, 0.9]))
    # pairs (positive, negative) ranked correctly: 8 of 9
    assert auc.result() == pytest.approx(8 / 9, abs=2e-3)


def test_precision_and_recall_by_hand():
    y_true = np.array([1, 0, 1, 1, 0])
    y_pred = np.array([0.9, 0.6, 0.4, 0.7, 0.2])
    precision, recall = metrics.Precision(), metrics.Recall()
    precision.update_state(y_true, y_pred)
    recall.update_state(y_true, y_pred)
    assert precision.result() == pytest.approx(2 / 3)
    assert recall.result() == pytest.approx(2 / 3)
    vector = metrics.Precision(thresholds=[0.1, 0.8])
    vector.update_state(y_true, y_pred)
    np.testing.assert_allclose(vector.result(), [3 / 5, 1.0])


def test_f1_without_average_is_per_class():
    f1 = metrics.F1Score()
    f1.update_state(np.eye(3)[[0, 1, 2, 2]], np.eye(3)[[0, 2, 2, 2]] * 0.9)
    np.testing.assert_allclose(f1.result(), [1.0, 0.0, 0.8], atol=1e-6)


@pytest.mark.parametrize("identifier,y_true_shape,y_pred_shape,cls", [
    ("accuracy", (8, 1), (8, 1), metrics.BinaryAccuracy),
    ("accuracy", (8,), (8, 1), metrics.BinaryAccuracy),
    ("acc", (8,), (8, 10), metrics.SparseCategoricalAccuracy),
    ("accuracy", (8, 1), (8, 10), metrics.SparseCategoricalAccuracy),
    ("accuracy", (8, 10), (8, 10), metrics.CategoricalAccuracy),
    ("Accuracy", (8, 10), (8, 10), metrics.CategoricalAccuracy),
])
def test_resolve_accuracy_follows_keras(identifier, y_true_shape, y_pred_shape, cls):
    metric = metrics.resolve(identifier, y_true_shape, y_pred_shape)
    assert type(metric) is cls and metric.name == identifier


@pytest.mark.parametrize("identifier,cls,name", [
    ("mae", metrics.MeanAbsoluteError, "mae"),
    ("mse", metrics.MeanSquaredError, "mse"),
    ("mean_squared_error", metrics.MeanSquaredError, "mean_squared_error"),
    ("precision", metrics.Precision, "precision"),
    ("recall", metrics.Recall, "recall"),
    ("auc", metrics.AUC, "auc"),
    ("AUC", metrics.AUC, "AUC"),
    ("f1_score", metrics.F1Score, "f1_score"),
    ("categorical_accuracy", metrics.CategoricalAccuracy, "categorical_accuracy"),
    ("top_k_categorical_accuracy", metrics.TopKCategoricalAccuracy,
     "top_k_categorical_accuracy"),
    ("categorical_crossentropy", metrics.MeanMetricWrapper, "categorical_crossentropy"),
])
def test_resolve_names_metrics_as_keras_logs_them(identifier, cls, name):
    metric = metrics.resolve(identifier, (8, 3), (8, 3))
    assert type(metric) is cls and metric.name == name


def test_resolve_keeps_instance_names_and_wraps_functions():
    recall = metrics.Recall(name="my_recall")
    assert metrics.resolve(recall, (8, 1), (8, 1)) is recall and recall.name == "my_recall"

    def within_one(y_true, y_pred):
        return (np.abs(y_true - y_pred) < 1).astype(float).mean(axis=-1)
    wrapped = metrics.resolve(within_one, (4, 1), (4, 1))
    assert wrapped.name == "within_one"
    wrapped.update_state(np.zeros((4, 1)), np.array([[0.5], [2.0], [0.0], [-3.0]]))
    assert wrapped.result() == pytest.approx(0.5)


def test_loss_function_metric_matches_loss():
    metric = metrics.get("categorical_crossentropy")
    y_true, y_pred = np.eye(3)[[0, 2]], np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])
    metric.update_state(y_true, y_pred)
    assert metric.result() == pytest.approx(-(np.log(0.7) + np.log(0.4)) / 2, rel=1e-6)


def test_get_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match=r"'accuracyy'.*binary_accuracy"):
        metrics.get("accuracyy")
    with pytest.raises(ValueError, match="None"):
        metrics.resolve(None, (1,), (1,))


@pytest.mark.parametrize("metric,y_true,y_pred,match", [
    (metrics.CategoricalAccuracy(), np.eye(3), np.ones((3, 4)),
     r"categorical_accuracy.*\(3, 3\).*\(3, 4\)"),
    (metrics.SparseCategoricalAccuracy(), np.eye(3), np.ones((3, 3)),
     r"sparse_categorical_accuracy.*\(3, 3\)"),
    (metrics.BinaryAccuracy(), np.ones((4, 2)), np.ones((4, 3)), r"\(4, 2\).*\(4, 3\)"),
    (metrics.Precision(), np.ones((4, 2)), np.ones((4, 3)), r"Precision.*\(4, 2\)"),
    (metrics.AUC(), np.ones((4,)), np.ones((3,)), r"AUC.*\(4,\)"),
    (metrics.F1Score(), np.ones((4,)), np.ones((4,)), r"F1Score.*2D"),
    (metrics.SparseTopKCategoricalAccuracy(k=1), np.array([0, 5]), np.ones((2, 3)),
     r"\[0, 3\)"),
])
def test_shape_mismatch_raises_without_changing_state(metric, y_true, y_pred, match):
    before = [v.copy() for v in metric.variables]
    with pytest.raises(ValueError, match=match):
        metric.update_state(y_true, y_pred)
    for b, v in zip(before, metric.variables):
        np.testing.assert_array_equal(b, v)


def test_bad_sample_weight_raises():
    with pytest.raises(ValueError, match=r"sample_weight of shape \(3,\)"):
        metrics.CategoricalAccuracy().update_state(np.eye(4), np.eye(4),
                                                   sample_weight=np.ones(3))


@pytest.mark.parametrize("kwargs,match", [
    ({"curve": "XY"}, "curve"), ({"summation_method": "sideways"}, "summation_method"),
    ({"num_thresholds": 1}, "num_thresholds"), ({"multi_label": True}, "multi_label"),
])
def test_bad_auc_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        metrics.AUC(**kwargs)


def test_bad_f1_arguments():
    with pytest.raises(ValueError, match="average"):
        metrics.F1Score(average="median")
    with pytest.raises(ValueError, match="threshold"):
        metrics.F1Score(threshold=1.5)


@pytest.mark.parametrize("factory,expected", [
    (lambda: metrics.Precision(name="p"),
     {"name": "p", "dtype": "float32", "thresholds": None, "top_k": None, "class_id": None}),
    (lambda: metrics.AUC(name="auc"),
     {"name": "auc", "dtype": "float32", "num_thresholds": 200, "curve": "ROC",
      "summation_method": "interpolation", "multi_label": False, "num_labels": None,
      "label_weights": None, "from_logits": False}),
    (lambda: metrics.F1Score(),
     {"name": "f1_score", "dtype": "float32", "average": None, "threshold": None}),
    (lambda: metrics.BinaryAccuracy(),
     {"name": "binary_accuracy", "dtype": "float32", "threshold": 0.5}),
    (lambda: metrics.TopKCategoricalAccuracy(),
     {"name": "top_k_categorical_accuracy", "dtype": "float32", "k": 5}),
    (lambda: metrics.Mean(), {"name": "mean", "dtype": "float32"}),
])
def test_config_is_keras_shaped_and_round_trips(factory, expected):
    metric = factory()
    assert metric.get_config() == expected
    assert type(metric).from_config(metric.get_config()).get_config() == expected
    assert metrics.get(metrics.serialize(metric)).get_config() == expected
