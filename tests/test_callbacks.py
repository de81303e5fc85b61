"""Callbacks, tested against a fake model and against traces recorded from Keras 3."""
import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from pylayers import callbacks
from pylayers.callbacks import (Callback, CallbackList, CSVLogger, EarlyStopping, History,
                                LambdaCallback, LearningRateScheduler, ModelCheckpoint,
                                ProgbarLogger, ReduceLROnPlateau, TerminateOnNaN)

FIXTURES = Path(__file__).parent / "fixtures"


class FakeOptimizer:
    def __init__(self, learning_rate):
        self.learning_rate = learning_rate


class FakeModel:
    """Exactly what callbacks may use of a model."""

    def __init__(self, learning_rate=0.1):
        self.stop_training = False
        self.optimizer = FakeOptimizer(learning_rate)
        self._weights = [np.zeros((2, 2)), np.zeros(2)]
        self.saved = []

    def get_weights(self):
        return [w.copy() for w in self._weights]

    def set_weights(self, weights):
        self._weights = [np.array(w) for w in weights]

    def save(self, path):
        Path(path).write_text("model")
        self.saved.append(("model", path))

    def save_weights(self, path):
        Path(path).write_text("weights")
        self.saved.append(("weights", path))


def weights_marker(model):
    return float(model.get_weights()[1][0])


def fit(model, callback_list, epoch_logs, steps=0):
    """A fit loop's calls to the callbacks; each epoch's weights are filled with its index."""
    callback_list.on_train_begin()
    for epoch, logs in enumerate(epoch_logs):
        callback_list.on_epoch_begin(epoch)
        model.set_weights([np.full((2, 2), float(epoch)), np.full(2, float(epoch))])
        for batch in range(steps):
            callback_list.on_train_batch_begin(batch)
            callback_list.on_train_batch_end(batch, {"loss": logs.get("loss", 0.0)})
        callback_list.on_epoch_end(epoch, dict(logs))
        if model.stop_training:
            break
    callback_list.on_train_end()


def run(callback, epoch_logs, learning_rate=0.1, steps=0):
    """Train a fake model with `callback` and History; return (model, history)."""
    model = FakeModel(learning_rate)
    callback_list = CallbackList([callback], add_history=True, model=model)
    fit(model, callback_list, epoch_logs, steps)
    return model, model.history


# Traces recorded from Keras 3 by tests/fixtures/make_keras_fixtures.py.
TRACES = json.loads((FIXTURES / "callback_traces.json").read_text())


@pytest.mark.parametrize("trace", TRACES, ids=lambda t: f"{t['callback']}-{t['kwargs']}")
def test_matches_keras_trace(trace, capsys):
    kwargs = trace["kwargs"]
    monitor = kwargs.get("monitor", "val_loss")
    callback = getattr(callbacks, trace["callback"])(**kwargs)
    model = FakeModel(0.1)
    learning_rates = []
    callback_list = CallbackList([callback], model=model)
    callback_list.on_train_begin()
    for epoch, value in enumerate(trace["values"]):
        callback_list.on_epoch_begin(epoch)
        model.set_weights([np.full(1, float(epoch))])
        callback_list.on_epoch_end(epoch, {monitor: value})
        learning_rates.append(model.optimizer.learning_rate)
        if model.stop_training:
            break
    callback_list.on_train_end()
    expected = trace["result"]
    assert len(learning_rates) == expected["epochs_run"]
    np.testing.assert_allclose(learning_rates, expected["learning_rates"], rtol=1e-12)
    assert model.get_weights()[0][0] == expected["weights_from_epoch"]
    assert capsys.readouterr().out == expected["printed"]


def test_early_stopping_stops_after_patience_and_restores_best_weights():
    val_losses = [1.0, 0.8, 0.5, 0.6, 0.7, 0.9, 0.2]
    stopper = EarlyStopping(patience=3, restore_best_weights=True)
    model, history = run(stopper, [{"loss": 1.0, "val_loss": v} for v in val_losses])
    assert history.epoch == [0, 1, 2, 3, 4, 5]           # stops at the end of epoch 5
    assert stopper.stopped_epoch == 5 and stopper.best_epoch == 2
    assert model.stop_training
    assert weights_marker(model) == 2.0                   # weights of epoch 2, the best


def test_early_stopping_without_restore_keeps_last_weights():
    model, _ = run(EarlyStopping(patience=1), [{"val_loss": v} for v in [1.0, 2.0, 3.0]])
    assert weights_marker(model) == 1.0


def test_early_stopping_maximises_accuracy_in_auto_mode():
    accuracies = [0.5, 0.7, 0.6, 0.65, 0.9]
    stopper = EarlyStopping(monitor="val_accuracy", patience=2)
    _, history = run(stopper, [{"val_accuracy": a} for a in accuracies])
    assert len(history.epoch) == 4 and stopper.best == 0.7


def test_early_stopping_instance_is_reusable():
    stopper = EarlyStopping(patience=0)
    run(stopper, [{"val_loss": v} for v in [1.0, 2.0]])
    _, history = run(stopper, [{"val_loss": v} for v in [5.0, 4.0, 3.0]])
    assert len(history.epoch) == 3


def test_missing_monitor_warns_with_available_keys():
    with pytest.warns(UserWarning, match=r"`val_loss` which is not available\. "
                                         r"Available metrics are: loss,accuracy"):
        model, history = run(EarlyStopping(), [{"loss": 1.0, "accuracy": 0.5}] * 3)
    assert len(history.epoch) == 3 and not model.stop_training
    with pytest.warns(UserWarning, match="Learning rate reduction is conditioned on metric"):
        run(ReduceLROnPlateau(patience=0), [{"loss": 1.0}] * 2)


@pytest.mark.parametrize("kwargs, message", [
    ({"patience": -1}, "Received: patience=-1"),
    ({"min_delta": "big"}, "Received: min_delta='big'"),
])
def test_early_stopping_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        EarlyStopping(**kwargs)


def test_unknown_mode_falls_back_to_auto_with_a_warning():
    with pytest.warns(UserWarning, match="mode 'biggest' is unknown, fallback to auto"):
        stopper = EarlyStopping(mode="biggest")
    assert stopper.mode == "auto"


def test_reduce_lr_on_plateau_reduces_at_the_right_epoch_and_logs_learning_rate():
    losses = [1.0, 0.5, 0.5, 0.5, 0.4, 0.4, 0.4, 0.4]
    reducer = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, min_lr=0.03)
    model, history = run(reducer, [{"loss": v} for v in losses], learning_rate=0.1)
    # The logs hold the rate the epoch ran with. No improvement at epochs 2 and 3:
    # halved at the end of epoch 3; again at the end of epoch 6, clamped to min_lr.
    assert history.history["learning_rate"] == [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.03]
    assert model.optimizer.learning_rate == pytest.approx(0.03)


def test_reduce_lr_on_plateau_rejects_factor_of_one_or_more():
    with pytest.raises(ValueError, match=r"factor >= 1\.0\. Received factor=1\.5"):
        ReduceLROnPlateau(factor=1.5)
    with pytest.raises(ValueError, match="Received: cooldown=-2"):
        ReduceLROnPlateau(cooldown=-2)


def test_model_checkpoint_formats_path_and_saves_every_epoch(tmp_path):
    pattern = str(tmp_path / "ckpt" / "model-{epoch:02d}-{val_loss:.2f}.keras")
    model, _ = run(ModelCheckpoint(pattern), [{"val_loss": v} for v in [0.5, 0.25]])
    assert model.saved == [("model", str(tmp_path / "ckpt" / "model-01-0.50.keras")),
                           ("model", str(tmp_path / "ckpt" / "model-02-0.25.keras"))]


def test_model_checkpoint_save_best_only_saves_improvements_only(tmp_path, capsys):
    path = str(tmp_path / "best-{epoch}.weights.h5")
    checkpoint = ModelCheckpoint(path, save_best_only=True, save_weights_only=True, verbose=1)
    model, _ = run(checkpoint, [{"val_loss": v} for v in [0.9, 0.7, 0.8, 0.6]])
    assert [p for _, p in model.saved] == [path.format(epoch=e) for e in (1, 2, 4)]
    assert all(kind == "weights" for kind, _ in model.saved)
    out = capsys.readouterr().out
    assert f"\nEpoch 1: val_loss improved from inf to 0.90000, saving model to " \
           f"{path.format(epoch=1)}\n" in out
    assert "\nEpoch 3: val_loss did not improve from 0.70000\n" in out


def test_model_checkpoint_initial_value_threshold_and_max_mode(tmp_path):
    checkpoint = ModelCheckpoint(str(tmp_path / "m{epoch}.keras"), monitor="val_accuracy",
                                 save_best_only=True, initial_value_threshold=0.6)
    model, _ = run(checkpoint, [{"val_accuracy": a} for a in [0.5, 0.7, 0.65, 0.8]])
    assert [Path(p).name for _, p in model.saved] == ["m2.keras", "m4.keras"]


def test_model_checkpoint_integer_save_freq_saves_every_n_batches(tmp_path):
    checkpoint = ModelCheckpoint(str(tmp_path / "e{epoch}b{batch}.keras"), save_freq=3)
    model, _ = run(checkpoint, [{"loss": 1.0}] * 2, steps=4)
    assert [Path(p).name for _, p in model.saved] == ["e1b3.keras", "e2b2.keras"]


@pytest.mark.parametrize("kwargs, message", [
    ({"filepath": "model.h5x"}, "must end in `.keras`"),
    ({"filepath": "model.keras", "save_weights_only": True}, "must end in `.weights.h5`"),
    ({"filepath": "model.keras", "save_freq": "batch"}, "Unrecognized save_freq: 'batch'"),
    ({"filepath": "model.keras", "save_freq": 0}, "Unrecognized save_freq: 0"),
])
def test_model_checkpoint_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ModelCheckpoint(**kwargs)


def test_model_checkpoint_unknown_placeholder_is_a_clear_error(tmp_path):
    checkpoint = ModelCheckpoint(str(tmp_path / "{val_acc:.2f}.keras"))
    with pytest.raises(KeyError, match="Failed to format this callback filepath"):
        run(checkpoint, [{"val_loss": 1.0}])


def test_model_checkpoint_refuses_to_save_over_a_directory(tmp_path):
    (tmp_path / "taken.keras").mkdir()
    with pytest.raises(IsADirectoryError, match="Filepath used is an existing directory"):
        run(ModelCheckpoint(str(tmp_path / "taken.keras")), [{"val_loss": 1.0}])


def test_learning_rate_scheduler_sets_rate_each_epoch(capsys):
    scheduler = LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else lr, verbose=1)
    model, history = run(scheduler, [{"loss": 1.0}] * 3, learning_rate=0.8)
    assert history.history["learning_rate"] == [0.8, 0.4, 0.2]
    assert model.optimizer.learning_rate == 0.2
    assert "\nEpoch 2: LearningRateScheduler setting learning rate to 0.4.\n" in \
           capsys.readouterr().out


def test_learning_rate_scheduler_accepts_epoch_only_schedule_and_checks_output():
    model, _ = run(LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1)), [{}] * 2)
    assert model.optimizer.learning_rate == pytest.approx(0.05)
    with pytest.raises(ValueError, match="should be a float. Got: 'fast'"):
        run(LearningRateScheduler(lambda epoch, lr: "fast"), [{}])
    with pytest.raises(TypeError, match="Received: schedule=0.1"):
        LearningRateScheduler(0.1)


def test_csv_logger_writes_header_and_one_row_per_epoch(tmp_path):
    path = tmp_path / "log.csv"
    logs = [{"loss": 0.5, "accuracy": 0.75, "val_loss": 0.625},
            {"loss": 0.25, "accuracy": 0.875}]
    run(CSVLogger(path), logs)
    with open(path, newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows == [["epoch", "accuracy", "loss", "val_loss"],
                    ["0", "0.75", "0.5", "0.625"],
                    ["1", "0.875", "0.25", "NA"]]


def test_csv_logger_append_keeps_one_header_and_custom_separator(tmp_path):
    path = tmp_path / "log.tsv"
    run(CSVLogger(path, separator="\t", append=True), [{"loss": 1.0}])
    run(CSVLogger(path, separator="\t", append=True), [{"loss": 0.5}])
    assert path.read_text().splitlines() == ["epoch\tloss", "0\t1.0", "0\t0.5"]
    run(CSVLogger(path, separator="\t"), [{"loss": 0.25}])
    assert path.read_text().splitlines() == ["epoch\tloss", "0\t0.25"]
    with pytest.raises(ValueError, match="Received: separator=', '"):
        CSVLogger(path, separator=", ")


@pytest.mark.parametrize("bad_loss", [math.nan, math.inf, -math.inf])
def test_terminate_on_nan_stops_training(bad_loss, capsys):
    model = FakeModel()
    callback_list = CallbackList([TerminateOnNaN()], model=model)
    for batch, loss in enumerate([1.0, 0.5, bad_loss]):
        callback_list.on_train_batch_end(batch, {"loss": np.float32(loss)})
    assert model.stop_training
    assert capsys.readouterr().out == "Batch 2: Invalid loss, terminating training\n"


def test_terminate_on_nan_ignores_finite_losses_and_can_raise():
    model = FakeModel()
    CallbackList([TerminateOnNaN()], model=model).on_train_batch_end(0, {"loss": 3.0})
    assert not model.stop_training
    raising = CallbackList([TerminateOnNaN(raise_error=True)], model=model)
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 4"):
        raising.on_train_batch_end(4, {"loss": math.nan})


def test_lambda_callback_calls_given_functions():
    calls = []
    callback = LambdaCallback(on_epoch_end=lambda epoch, logs: calls.append(("end", epoch)),
                              on_train_begin=lambda logs: calls.append("begin"),
                              on_test_end=lambda logs: calls.append("test_end"))
    run(callback, [{}] * 2)
    CallbackList([callback]).on_test_end()
    assert calls == ["begin", ("end", 0), ("end", 1), "test_end"]
    with pytest.raises(TypeError, match="unknown hook `on_lunch`"):
        LambdaCallback(on_lunch=print)
    with pytest.raises(TypeError, match="Received: on_epoch_end=3"):
        LambdaCallback(on_epoch_end=3)


class Recorder(Callback):
    def __init__(self, name, calls):
        super().__init__()
        self.name, self.calls = name, calls

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append((self.name, epoch, dict(logs)))

    def on_batch_end(self, batch, logs=None):
        self.calls.append((self.name, "batch", batch, logs))


def test_callback_list_dispatches_in_order_and_sets_model_and_params():
    calls = []
    first, second = Recorder("a", calls), Recorder("b", calls)
    model = FakeModel()
    callback_list = CallbackList([first, [second]], add_history=True, add_progbar=True,
                                 model=model, verbose=0, epochs=1, steps=1)
    assert [type(c) for c in callback_list.callbacks] == [Recorder, Recorder, History,
                                                          ProgbarLogger]
    assert first.model is model and second.params == {"verbose": 0, "epochs": 1, "steps": 1}
    assert model.history is callback_list.callbacks[2]
    callback_list.on_train_batch_end(0, {"loss": np.float32(0.5), "acc": np.float64(1)})
    callback_list.on_epoch_end(0, {"loss": 0.5})
    assert calls == [("a", "batch", 0, {"acc": 1.0, "loss": 0.5}),
                     ("b", "batch", 0, {"acc": 1.0, "loss": 0.5}),
                     ("a", 0, {"loss": 0.5}), ("b", 0, {"loss": 0.5})]
    assert type(calls[0][3]["loss"]) is float


def test_callback_list_keeps_given_history_and_rejects_non_callbacks():
    history = History()
    callback_list = CallbackList([history], add_history=True)
    assert callback_list.callbacks == [history]
    with pytest.raises(TypeError, match="Received: 'early' of type str"):
        CallbackList(["early"])


def test_history_records_every_log_per_epoch():
    _, history = run(Callback(), [{"loss": 1.0, "val_loss": 2.0}, {"loss": 0.5, "val_loss": 1.5}])
    assert history.epoch == [0, 1]
    assert history.history == {"loss": [1.0, 0.5], "val_loss": [2.0, 1.5]}


def test_base_callback_batch_hooks_alias_the_old_names():
    calls = []
    callback = Recorder("r", calls)
    callback.on_train_batch_end(3, {"loss": 1.0})
    assert calls == [("r", "batch", 3, {"loss": 1.0})]
