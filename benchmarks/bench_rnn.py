"""Recurrent layers, pylayers beside PyTorch's nn.LSTM / nn.GRU (CPU, same thread count)
in one run: inference forward, forward + backward (weight and input gradients) of one
layer returning the full sequence, and a training epoch of the brief's stacked LSTM
model. Group names pair the peers; compare medians as ratios.

    python -m pytest benchmarks/bench_rnn.py --benchmark-only --benchmark-group-by=group
    python benchmarks/compare.py benchmarks/bench_rnn.py --threads 2   # markdown table
"""
import numpy as np
import pytest

import pylayers as keras
from pylayers import layers

torch = pytest.importorskip("torch")

# name -> (kind, batch, steps, features, units)
LAYER_CASES = {
    "lstm_b128_t50_f10_u64": ("LSTM", 128, 50, 10, 64),
    "lstm_b32_t100_f10_u64": ("LSTM", 32, 100, 10, 64),
    "lstm_b64_t50_f128_u128": ("LSTM", 64, 50, 128, 128),
    "gru_b32_t100_f10_u64": ("GRU", 32, 100, 10, 64),
    "gru_b64_t50_f128_u128": ("GRU", 64, 50, 128, 128),
}
EPOCH_SAMPLES, EPOCH_BATCH, EPOCH_STEPS = 1024, 32, 100


@pytest.fixture(autouse=True)
def same_threads():
    torch.set_num_threads(keras.get_num_threads())


def case_data(name):
    kind, batch, steps, features, units = LAYER_CASES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, steps, features), dtype=np.float32)
    dy = rng.standard_normal((batch, steps, units), dtype=np.float32)
    return kind, x, dy, units


def pylayers_layer(kind, x, units):
    keras.utils.set_random_seed(0)
    layer = getattr(layers, kind)(units, return_sequences=True)
    layer(x)
    return layer


def torch_layer(kind, x, units):
    torch.manual_seed(0)
    return getattr(torch.nn, kind)(x.shape[-1], units, batch_first=True)


@pytest.mark.parametrize("name", LAYER_CASES)
def test_forward_pylayers(benchmark, name):
    kind, x, _, units = case_data(name)
    layer = pylayers_layer(kind, x, units)
    benchmark.group = f"forward:{name}"
    benchmark.extra_info["samples"] = len(x)
    benchmark(layer, x)


@pytest.mark.parametrize("name", LAYER_CASES)
def test_forward_torch(benchmark, name):
    kind, x, _, units = case_data(name)
    module, tx = torch_layer(kind, x, units), torch.from_numpy(x)
    benchmark.group = f"forward:{name}"
    benchmark.extra_info["samples"] = len(x)

    def forward():
        with torch.no_grad():
            return module(tx)
    benchmark(forward)


@pytest.mark.parametrize("name", LAYER_CASES)
def test_forward_backward_pylayers(benchmark, name):
    kind, x, dy, units = case_data(name)
    layer = pylayers_layer(kind, x, units)
    benchmark.group = f"forward_backward:{name}"
    benchmark.extra_info["samples"] = len(x)

    def step():
        for variable in layer.trainable_weights:
            variable.zero_grad()
        _, backprop = layer._train_forward(x, True)
        return backprop(dy)
    benchmark(step)


@pytest.mark.parametrize("name", LAYER_CASES)
def test_forward_backward_torch(benchmark, name):
    kind, x, dy, units = case_data(name)
    module = torch_layer(kind, x, units)
    tx, tdy = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(dy)
    benchmark.group = f"forward_backward:{name}"
    benchmark.extra_info["samples"] = len(x)

    def step():
        module.zero_grad(set_to_none=False)
        tx.grad = None
        y, _ = module(tx)
        y.backward(tdy)
    benchmark(step)


def epoch_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((EPOCH_SAMPLES, EPOCH_STEPS, 1), dtype=np.float32)
    return x, x.mean(axis=1)


def test_stacked_lstm_train_epoch_pylayers(benchmark):
    """The brief's model: LSTM(64, return_sequences) -> LSTM(10) -> Dense(1), Adam, MSE."""
    x, y = epoch_data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([layers.LSTM(64, return_sequences=True, input_shape=(EPOCH_STEPS, 1)),
                              layers.LSTM(10), layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    benchmark.group = "train_epoch:stacked_lstm_t100"
    benchmark.extra_info["samples"] = EPOCH_SAMPLES
    benchmark.pedantic(model.fit, args=(x, y), kwargs={"batch_size": EPOCH_BATCH, "epochs": 1,
                                                       "verbose": 0}, rounds=3, iterations=1)


class TorchStackedLSTM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.first = torch.nn.LSTM(1, 64, batch_first=True)
        self.second = torch.nn.LSTM(64, 10, batch_first=True)
        self.head = torch.nn.Linear(10, 1)

    def forward(self, x):
        sequence, _ = self.first(x)
        _, (h, _) = self.second(sequence)
        return self.head(h[-1])


def test_stacked_lstm_train_epoch_torch(benchmark):
    x, y = epoch_data()
    torch.manual_seed(0)
    model = TorchStackedLSTM()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    benchmark.group = "train_epoch:stacked_lstm_t100"
    benchmark.extra_info["samples"] = EPOCH_SAMPLES

    def epoch():
        order = torch.randperm(len(tx))
        for start in range(0, len(tx), EPOCH_BATCH):
            index = order[start:start + EPOCH_BATCH]
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(model(tx[index]), ty[index]).backward()
            optimizer.step()
    benchmark.pedantic(epoch, rounds=3, iterations=1)
