"""Whole models as users time them, pylayers beside PyTorch (CPU, same thread count) in
one run: one training epoch (after a warm-up) and predict calls. Groups pair the peers;
`python benchmarks/compare.py benchmarks/bench_models.py --threads 2` prints the table.
Keras on TensorFlow (CPU) joins the table where it is installed
(`pip install tensorflow-cpu`); its tests are skipped otherwise."""
import importlib.util
import os
import time

import numpy as np
import pytest

import pylayers as keras
from pylayers import layers

torch = pytest.importorskip("torch")
nn = torch.nn

BATCH = 128
STEPS = 20


def mlp(sizes):
    hidden = [layers.Dense(width, activation="relu") for width in sizes[1:-1]]
    return [layers.InputLayer(shape=(sizes[0],))] + hidden + [layers.Dense(sizes[-1], activation="softmax")]


def torch_mlp(sizes):
    modules = []
    for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1]):
        modules += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*modules, nn.Linear(sizes[-2], sizes[-1]))


def cnn():
    return [layers.InputLayer(shape=(28, 28, 1)), layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)), layers.Flatten(), layers.Dense(10, activation="softmax")]


class TorchCNN(nn.Module):
    """The same network in PyTorch, taking channels-last input like the Keras model."""

    def __init__(self):
        super().__init__()
        self.conv, self.pool, self.dense = nn.Conv2d(1, 32, 3), nn.MaxPool2d(2), nn.Linear(13 * 13 * 32, 10)

    def forward(self, x):
        h = self.pool(torch.relu(self.conv(x.permute(0, 3, 1, 2))))
        return self.dense(h.permute(0, 2, 3, 1).reshape(len(x), -1))


def lstm_64():
    return [layers.InputLayer(shape=(50, 10)), layers.LSTM(64), layers.Dense(1)]


def stacked_lstm():
    return [layers.InputLayer(shape=(100, 1)), layers.LSTM(64, return_sequences=True),
            layers.LSTM(10), layers.Dense(1)]


class TorchLSTMs(nn.Module):
    def __init__(self, features, units):
        super().__init__()
        self.lstms = nn.ModuleList(nn.LSTM(i, u, batch_first=True)
                                   for i, u in zip([features] + units[:-1], units))
        self.dense = nn.Linear(units[-1], 1)

    def forward(self, x):
        for lstm in self.lstms:
            x, _ = lstm(x)
        return self.dense(x[:, -1])


# name -> (pylayers layers, torch module, input shape, classes (None: regression))
MODELS = {
    "mlp_784_64_10": (lambda: mlp([784, 64, 10]), lambda: torch_mlp([784, 64, 10]), (784,), 10),
    "mlp_784_512_512_10": (lambda: mlp([784, 512, 512, 10]), lambda: torch_mlp([784, 512, 512, 10]), (784,), 10),
    "cnn_28x28": (cnn, TorchCNN, (28, 28, 1), 10),
    "lstm64_50x10": (lstm_64, lambda: TorchLSTMs(10, [64]), (50, 10), None),
    "stacked_lstm_100x1": (stacked_lstm, lambda: TorchLSTMs(1, [64, 10]), (100, 1), None),
}
PREDICT_MODELS = ["mlp_784_64_10", "mlp_784_512_512_10", "cnn_28x28"]


def data(name, n):
    _, _, shape, classes = MODELS[name]
    rng = np.random.default_rng(0)
    x = rng.random((n,) + shape, dtype=np.float32)
    y = rng.integers(0, classes, size=n) if classes else rng.random((n, 1), dtype=np.float32)
    return x, y


def pylayers_model(name):
    keras.utils.set_random_seed(0)
    build, _, _, classes = MODELS[name]
    model = keras.Sequential(build())
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy" if classes else "mse")
    return model


def torch_training(name):
    torch.manual_seed(0)
    _, build, _, classes = MODELS[name]
    model = build()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss() if classes else nn.MSELoss()

    def epoch(x, y):
        order = torch.randperm(len(x))
        for start in range(0, len(x), BATCH):
            index = order[start:start + BATCH]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x[index]), y[index]).backward()
            optimizer.step()
    return model, epoch


@pytest.fixture(autouse=True)
def same_threads():
    torch.set_num_threads(keras.get_num_threads())


@pytest.fixture(scope="module")
def tf_keras():
    """Keras 3 on TensorFlow, with TensorFlow's thread pools at pylayers' thread count."""
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed: no Keras/TensorFlow column")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras as real_keras
    import tensorflow as tf
    if real_keras.backend.backend() != "tensorflow":
        pytest.skip(f"Keras runs on {real_keras.backend.backend()}, not TensorFlow")
    threads = keras.get_num_threads()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:   # already initialised by an earlier test: keeps its setting
        pass
    return real_keras


def keras_model(tf_keras, name):
    """The same Sequential model in real Keras, read from the pylayers model's JSON."""
    tf_keras.utils.set_random_seed(0)
    classes = MODELS[name][3]
    model = tf_keras.models.model_from_json(keras.Sequential(MODELS[name][0]()).to_json())
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy" if classes else "mse")
    return model


@pytest.mark.parametrize("name", MODELS)
def test_train_epoch_pylayers(benchmark, name):
    benchmark.group = f"train_epoch:{name}"
    x, y = data(name, BATCH * STEPS)
    model = pylayers_model(name)
    model.fit(x[:BATCH], y[:BATCH], batch_size=BATCH, verbose=0)
    benchmark.extra_info["samples"] = len(x)
    benchmark.pedantic(model.fit, args=(x, y), kwargs={"batch_size": BATCH, "verbose": 0},
                       rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("name", ["cnn_28x28", "mlp_784_512_512_10"])
def test_thread_scaling_pylayers(benchmark, name):
    """Training epochs on one thread and on the whole budget, alternating (this VM's
    speed drifts about 2x over minutes, more than the difference to be measured):
    extra_info["ratio"] = median(one thread) / median(all threads), which compare.py
    prints. The timed rounds are the pairs."""
    benchmark.group = f"thread_scaling:{name}"
    budget = keras.get_num_threads()
    x, y = data(name, BATCH * STEPS)
    model = pylayers_model(name)
    model.fit(x[:BATCH], y[:BATCH], batch_size=BATCH, verbose=0)
    times = {1: [], budget: []}

    def alternate():
        for threads in times:
            keras.set_num_threads(threads)
            start = time.perf_counter()
            model.fit(x, y, batch_size=BATCH, verbose=0)
            times[threads].append(time.perf_counter() - start)
        keras.set_num_threads(budget)
    benchmark.pedantic(alternate, rounds=8, warmup_rounds=1)
    timed = {threads: runs[1:] for threads, runs in times.items()}   # after the warm-up
    benchmark.extra_info["ratio"] = float(np.median(timed[1]) / np.median(timed[budget]))


LATE_WARMUP_EPOCHS = 50   # 1,000 steps


@pytest.mark.parametrize("library", ["pylayers", "torch", "keras"])
def test_train_epoch_after_1000_steps(benchmark, request, library):
    """An epoch of the MLP 784-512-512-10 after 1,000 training steps. By then a unit
    whose gradient stays 0 has decayed its Adam slots into subnormal numbers, on which
    arithmetic is ~30x slower unless flushed to zero (TensorFlow flushes them)."""
    name = "mlp_784_512_512_10"
    benchmark.group = f"train_epoch_after_1000_steps:{name}"
    x, y = data(name, BATCH * STEPS)
    if library != "torch":
        model = pylayers_model(name) if library == "pylayers" \
            else keras_model(request.getfixturevalue("tf_keras"), name)

        def epoch():
            model.fit(x, y, batch_size=BATCH, verbose=0)
    else:
        _, torch_epoch = torch_training(name)
        x_tensor, y_tensor = torch.from_numpy(x), torch.from_numpy(y)

        def epoch():
            torch_epoch(x_tensor, y_tensor)
    for _ in range(LATE_WARMUP_EPOCHS):
        epoch()
    benchmark.extra_info["samples"] = len(x)
    benchmark.pedantic(epoch, rounds=5)


@pytest.mark.parametrize("name", MODELS)
def test_train_epoch_torch(benchmark, name):
    benchmark.group = f"train_epoch:{name}"
    x, y = data(name, BATCH * STEPS)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    _, epoch = torch_training(name)
    epoch(x[:BATCH], y[:BATCH])
    benchmark.extra_info["samples"] = len(x)
    benchmark.pedantic(epoch, args=(x, y), rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("name", MODELS)
def test_train_epoch_keras(benchmark, tf_keras, name):
    benchmark.group = f"train_epoch:{name}"
    x, y = data(name, BATCH * STEPS)
    model = keras_model(tf_keras, name)
    model.fit(x[:BATCH], y[:BATCH], batch_size=BATCH, verbose=0)
    benchmark.extra_info["samples"] = len(x)
    benchmark.pedantic(model.fit, args=(x, y), kwargs={"batch_size": BATCH, "verbose": 0},
                       rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("batch", [1, 256])
@pytest.mark.parametrize("name", PREDICT_MODELS)
def test_predict_keras(benchmark, tf_keras, name, batch):
    benchmark.group = f"predict_batch{batch}:{name}"
    x, _ = data(name, batch)
    model = keras_model(tf_keras, name)
    model.predict(x, verbose=0)
    benchmark.extra_info["samples"] = batch
    benchmark.pedantic(model.predict, args=(x,), kwargs={"batch_size": batch, "verbose": 0}, rounds=20,
                       warmup_rounds=2)


@pytest.mark.parametrize("batch", [1, 256])
@pytest.mark.parametrize("name", PREDICT_MODELS)
def test_predict_pylayers(benchmark, name, batch):
    benchmark.group = f"predict_batch{batch}:{name}"
    x, _ = data(name, batch)
    model = pylayers_model(name)
    benchmark.extra_info["samples"] = batch
    benchmark(model.predict, x, batch_size=batch, verbose=0)   # one batch of `batch`


@pytest.mark.parametrize("batch", [1, 256])
@pytest.mark.parametrize("name", PREDICT_MODELS)
def test_predict_torch(benchmark, name, batch):
    benchmark.group = f"predict_batch{batch}:{name}"
    x, _ = data(name, batch)
    model = MODELS[name][1]().eval()

    def predict(batch_x):
        with torch.inference_mode():
            return torch.softmax(model(torch.from_numpy(batch_x)), dim=-1).numpy()
    benchmark.extra_info["samples"] = batch
    benchmark(predict, x)


LAYER_CALL_LIBRARIES = ("pylayers", "torch")


@pytest.mark.parametrize("library", LAYER_CALL_LIBRARIES)
def test_layer_calls_batch1(benchmark, library):
    """Batch-1 inference as an application calls it: the model's layers called one after
    another on a (1, 784) array (pylayers), the module under torch.inference_mode (torch)."""
    name = "mlp_784_512_512_10"
    benchmark.group = f"layer_calls_batch1:{name}"
    x, _ = data(name, 1)
    benchmark.extra_info["samples"] = 1
    if library == "pylayers":
        model_layers = pylayers_model(name).layers

        def predict(h):
            for layer in model_layers:
                h = layer(h)
            return h
    else:
        model = MODELS[name][1]().eval()

        def predict(h):
            with torch.inference_mode():
                return torch.softmax(model(torch.from_numpy(h)), dim=-1).numpy()
    assert predict(x).shape == (1, 10)
    benchmark(predict, x)
