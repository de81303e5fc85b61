"""Conv2D forward and forward+backward, and training epochs of the brief's CNN, pylayers
beside PyTorch (CPU, same thread count) in one run. Group names pair the peers; compare
medians as ratios (the machine is shared, so absolute times are noisy).

    python -m pytest benchmarks/bench_conv.py --benchmark-only
    python benchmarks/compare.py benchmarks/bench_conv.py --threads 2   # markdown table

PyTorch gets NCHW tensors (its native CPU layout), pylayers NHWC (Keras'). The first
layer of a network needs no input gradient, so its forward+backward skips dx in both.
"""
import numpy as np
import pytest

import pylayers as keras
from pylayers import layers

torch = pytest.importorskip("torch")

# name -> (batch, height, width, in channels, filters, padding); 3x3 kernels, relu.
CONV_CASES = {
    "b128_28x28x1_to_32": (128, 28, 28, 1, 32, "valid"),     # the brief's CNN, layer 1
    "b128_13x13x32_to_64": (128, 13, 13, 32, 64, "valid"),   # the brief's CNN, layer 2
    "b32_28x28x1_to_32": (32, 28, 28, 1, 32, "valid"),
    "b32_32x32x16_to_32_same": (32, 32, 32, 16, 32, "same"),
    "b8_56x56x64_to_64_same": (8, 56, 56, 64, 64, "same"),
}
BATCH = 128
STEPS_PER_EPOCH = 10   # 1,280 images of 28x28: the 60,000-image epoch is 46.9 times this


@pytest.fixture(autouse=True)
def same_threads():
    torch.set_num_threads(keras.get_num_threads())


def conv_data(case):
    batch, height, width, channels, filters, padding = CONV_CASES[case]
    rng = np.random.default_rng(0)
    x = rng.random((batch, height, width, channels), dtype=np.float32)
    layer = layers.Conv2D(filters, 3, padding=padding, activation="relu")
    y = layer(x)
    dy = rng.random(y.shape, dtype=np.float32)
    return layer, x, dy, channels > 1


def pylayers_step(layer, x, dy, need_dx):
    for v in layer.trainable_weights:
        v.grad = None
    _, backprop = layer._forward(x, training=True)
    backprop(dy, need_dx=need_dx)


def torch_conv(case):
    layer, x, dy, need_dx = conv_data(case)
    _, _, _, channels, filters, padding = CONV_CASES[case]
    conv = torch.nn.Conv2d(channels, filters, 3, padding=1 if padding == "same" else 0)
    tx = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).requires_grad_(need_dx)
    tdy = torch.from_numpy(np.ascontiguousarray(dy.transpose(0, 3, 1, 2)))
    return conv, tx, tdy


def torch_forward(conv, tx):
    with torch.no_grad():
        return torch.relu(conv(tx))


def torch_step(conv, tx, tdy):
    conv.zero_grad(set_to_none=True)
    torch.relu(conv(tx)).backward(tdy)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_forward_pylayers(benchmark, case):
    benchmark.group = f"conv_forward:{case}"
    layer, x, _, _ = conv_data(case)
    benchmark(layer._forward, x, training=False)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_forward_torch(benchmark, case):
    benchmark.group = f"conv_forward:{case}"
    conv, tx, _ = torch_conv(case)
    benchmark(torch_forward, conv, tx)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_forward_backward_pylayers(benchmark, case):
    benchmark.group = f"conv_forward_backward:{case}"
    benchmark(pylayers_step, *conv_data(case))


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_forward_backward_torch(benchmark, case):
    benchmark.group = f"conv_forward_backward:{case}"
    benchmark(torch_step, *torch_conv(case))


def mnist_like(n=BATCH * STEPS_PER_EPOCH):
    rng = np.random.default_rng(0)
    return rng.random((n, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, size=n)


def pylayers_cnn():
    """Seed model 10: Conv(32) -> MaxPool -> Conv(64) -> MaxPool -> Flatten -> Dense(10)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
        layers.MaxPooling2D((2, 2)), layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)), layers.Flatten(), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def torch_cnn():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64 * 5 * 5, 10))
    return model, torch.optim.Adam(model.parameters(), lr=1e-3), torch.nn.CrossEntropyLoss()


def torch_epoch(model, optimizer, loss_fn, x, y):
    order = torch.randperm(len(x))
    for start in range(0, len(x), BATCH):
        index = order[start:start + BATCH]
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x[index]), y[index]).backward()
        optimizer.step()


def test_cnn_train_epoch_pylayers(benchmark):
    benchmark.group = "cnn_train_epoch:28x28_batch128"
    x, y = mnist_like()
    model = pylayers_cnn()
    model.fit(x[:BATCH], y[:BATCH], batch_size=BATCH, verbose=0)   # warm-up
    benchmark.extra_info["samples"] = len(x)
    benchmark.pedantic(model.fit, args=(x, y), kwargs={"batch_size": BATCH, "verbose": 0},
                       rounds=5, warmup_rounds=0)


def test_cnn_train_epoch_torch(benchmark):
    benchmark.group = "cnn_train_epoch:28x28_batch128"
    x, y = mnist_like()
    x, y = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(y)
    model, optimizer, loss_fn = torch_cnn()
    torch_epoch(model, optimizer, loss_fn, x[:BATCH], y[:BATCH])
    benchmark.extra_info["samples"] = len(x)
    benchmark.pedantic(torch_epoch, args=(model, optimizer, loss_fn, x, y), rounds=5,
                       warmup_rounds=0)
