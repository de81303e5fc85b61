"""What the framework adds to a training step: epochs of the MLP 784-512-512-10 (batch
128, Adam, sparse categorical crossentropy on a softmax output) through `fit`, beside the
same kernels called bare in a loop (the batch gather included), interleaved in one
process.

    python benchmarks/step_overhead.py [--threads N] [--epochs E]

Prints the median epoch of each and their difference: the Python around the kernels."""
import argparse
import time

import numpy as np

import pylayers as keras
from pylayers import layers
from pylayers._kernels import dense, losses, optim
from pylayers._kernels.dense import ACTIVATION_CODES
from pylayers.layers.buffers import aligned_empty

SIZES = [784, 512, 512, 10]
BATCH, SAMPLES = 128, 2560


def bare_epoch_runner(rng):
    """An epoch as bare kernel calls: forward, fused softmax-crossentropy gradient,
    backward, one Adam call over all six variables."""
    kernels = [aligned_empty((a, b)) for a, b in zip(SIZES[:-1], SIZES[1:])]
    for kernel in kernels:
        kernel[...] = rng.standard_normal(kernel.shape).astype(np.float32) * 0.05
    biases = [np.zeros(b, np.float32) for b in SIZES[1:]]
    variables = [v for pair in zip(kernels, biases) for v in pair]
    grads = [np.zeros_like(v) for v in variables]
    slots = [[np.zeros(v.size, np.float32) for v in variables] for _ in range(2)]
    adam = [(v.reshape(-1), g.reshape(-1), m, s, None, 1.0, 0.0, 0.0)
            for v, g, m, s in zip(variables, grads, *slots)]
    outputs = [aligned_empty((BATCH, b)) for b in SIZES[1:]]
    dz = [aligned_empty((BATCH, b)) for b in SIZES[1:]]
    dx = [aligned_empty((BATCH, a)) for a in SIZES[:-1]]
    codes = [ACTIVATION_CODES["relu"]] * 2 + [ACTIVATION_CODES["softmax"]]

    def step(x, labels):
        h = x
        for i, code in enumerate(codes):
            dense.dense_forward(h, kernels[i], biases[i], code, 0.0, outputs[i])
            h = outputs[i]
        _, d = losses.sparse_softmax_crossentropy(outputs[-1], labels, 1.0 / BATCH,
                                                  1e-7, 1 - 1e-7)
        for i in reversed(range(len(codes))):
            code = ACTIVATION_CODES["linear"] if i == len(codes) - 1 else codes[i]
            dense.dense_backward(outputs[i - 1] if i else x, kernels[i], outputs[i], d, code,
                                 0.0, dz[i], grads[2 * i], grads[2 * i + 1],
                                 dx[i] if i else None, False)
            d = dx[i]
        optim.adam_update_all(adam, 1e-3, 0.9, 0.999, 1e-7)

    def epoch(x, y):
        order = rng.permutation(len(x))
        for start in range(0, len(x), BATCH):
            index = order[start:start + BATCH]
            step(x[index], y[index])
    return epoch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=keras.get_num_threads())
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    keras.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.random((SAMPLES, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], SAMPLES)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([layers.InputLayer(shape=(SIZES[0],))]
                             + [layers.Dense(w, activation="relu") for w in SIZES[1:-1]]
                             + [layers.Dense(SIZES[-1], activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    bare_epoch = bare_epoch_runner(rng)
    runs = {"fit": lambda: model.fit(x, y, batch_size=BATCH, verbose=0),
            "bare kernels": lambda: bare_epoch(x, y)}
    times = {name: [] for name in runs}
    for round_ in range(args.epochs + 2):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if round_ >= 2:   # two warm-up rounds
                times[name].append(time.perf_counter() - start)
    medians = {name: 1e3 * float(np.median(t)) for name, t in times.items()}
    for name, median in medians.items():
        print(f"{name:>12}: {median:.2f} ms an epoch ({args.threads} threads)")
    print(f"  difference: {medians['fit'] - medians['bare kernels']:.2f} ms an epoch, "
          f"{1e3 * (medians['fit'] - medians['bare kernels']) / (SAMPLES // BATCH):.0f} us a step")


if __name__ == "__main__":
    main()
