"""Training epochs and predict calls of the brief's MLPs, pylayers beside PyTorch (CPU,
same thread count) in one run. Group names pair the peers; compare medians as ratios.

    python -m pytest benchmarks/bench_mlp.py --benchmark-only
    python benchmarks/compare.py benchmarks/bench_mlp.py --threads 2   # markdown table
"""
import numpy as np
import pytest

import pylayers as keras
from pylayers import layers

torch = pytest.importorskip("torch")

BATCH = 128
STEPS_PER_EPOCH = 40
SHAPES = {"mlp_784_64_10": [784, 64, 10], "mlp_784_512_512_10": [784, 512, 512, 10]}


def data(sizes, n=BATCH * STEPS_PER_EPOCH):
    rng = np.random.default_rng(0)
    return rng.random((n, sizes[0]), dtype=np.float32), rng.integers(0, sizes[-1], size=n)


def pylayers_mlp(sizes):
    keras.utils.set_random_seed(0)
    hidden = [layers.Dense(width, activation="relu") for width in sizes[1:-1]]
    model = keras.Sequential([layers.InputLayer(shape=(sizes[0],))] + hidden
                             + [layers.Dense(sizes[-1], activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def torch_mlp(sizes):
    torch.manual_seed(0)
    modules = []
    for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1]):
        modules += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    modules.append(torch.nn.Linear(sizes[-2], sizes[-1]))
    model = torch.nn.Sequential(*modules)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3), torch.nn.CrossEntropyLoss()


def torch_epoch(model, optimizer, loss_fn, x, y):
    order = torch.randperm(len(x))
    for start in range(0, len(x), BATCH):
        index = order[start:start + BATCH]
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x[index]), y[index]).backward()
        optimizer.step()


@pytest.fixture(autouse=True)
def same_threads():
    torch.set_num_threads(keras.get_num_threads())


@pytest.mark.parametrize("name", SHAPES)
def test_train_epoch_pylayers(benchmark, name):
    benchmark.group = f"train_epoch:{name}"
    x, y = data(SHAPES[name])
    model = pylayers_mlp(SHAPES[name])
    model.fit(x[:BATCH], y[:BATCH], batch_size=BATCH, verbose=0)  # warm-up
    benchmark.extra_info["samples"] = len(x)
    benchmark(model.fit, x, y, batch_size=BATCH, epochs=1, verbose=0)


@pytest.mark.parametrize("name", SHAPES)
def test_train_epoch_torch(benchmark, name):
    benchmark.group = f"train_epoch:{name}"
    x, y = data(SHAPES[name])
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    model, optimizer, loss_fn = torch_mlp(SHAPES[name])
    torch_epoch(model, optimizer, loss_fn, x[:BATCH], y[:BATCH])
    benchmark.extra_info["samples"] = len(x)
    benchmark(torch_epoch, model, optimizer, loss_fn, x, y)


@pytest.mark.parametrize("name", SHAPES)
def test_predict_batch_pylayers(benchmark, name):
    benchmark.group = f"predict_{BATCH}:{name}"
    x, _ = data(SHAPES[name], BATCH)
    model = pylayers_mlp(SHAPES[name])
    benchmark.extra_info["samples"] = len(x)
    benchmark(model.predict_on_batch, x)


@pytest.mark.parametrize("name", SHAPES)
def test_predict_batch_torch(benchmark, name):
    benchmark.group = f"predict_{BATCH}:{name}"
    x, _ = data(SHAPES[name], BATCH)
    model, _, _ = torch_mlp(SHAPES[name])

    def predict(batch):
        with torch.inference_mode():
            return torch.softmax(model(torch.from_numpy(batch)), dim=-1).numpy()
    benchmark.extra_info["samples"] = len(x)
    benchmark(predict, x)
