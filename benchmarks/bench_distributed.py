"""Scaling of data-parallel training (pylayers.distribute) on this machine: training
throughput (samples/s) of one epoch with 1 and with 2 MPI ranks, 1 thread each
(PYLAYERS_NUM_THREADS=1), the same global batch of 128 (per-rank 128 / ranks).

    python benchmarks/bench_distributed.py [--repeats 5] [--models mlp cnn]

It launches `mpiexec -n R python bench_distributed.py --worker ...` for R = 1, 2,
`--repeats` times each, alternating, and prints the median of each and the speed-up.
Each worker times `fit(epochs=1)` after a warm-up epoch, between two barriers."""
import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

GLOBAL_BATCH = 128
MODELS = {  # name: (description, samples per epoch)
    "mlp": ("MLP 784-512-512-10, adam", 128 * 64),
    "cnn": ("CNN Conv2D(32,3)-MaxPool-Dense(10) on 28x28x1, adam", 128 * 16),
}


def build(name):
    import pylayers as keras
    from pylayers import layers
    if name == "mlp":
        return keras.Sequential([layers.Input((784,)), layers.Dense(512, activation="relu"),
                                 layers.Dense(512, activation="relu"),
                                 layers.Dense(10, activation="softmax")])
    return keras.Sequential([layers.Input((28, 28, 1)), layers.Conv2D(32, 3, activation="relu"),
                             layers.MaxPooling2D(), layers.Flatten(),
                             layers.Dense(10, activation="softmax")])


def worker(name):
    """One rank: print the samples/s of one epoch (rank 0)."""
    import pylayers as keras
    from pylayers.distribute import MPIStrategy
    strategy = MPIStrategy()
    samples = MODELS[name][1]
    rng = np.random.default_rng(0)
    shape = (784,) if name == "mlp" else (28, 28, 1)
    x = rng.random((samples,) + shape, dtype=np.float32)
    y = rng.integers(0, 10, samples)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build(name)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    batch = GLOBAL_BATCH // strategy.size
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)     # warm-up
    strategy.comm.Barrier()
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    strategy.comm.Barrier()
    seconds = time.perf_counter() - start
    if strategy.rank == 0:
        print(f"samples/s {samples / seconds:.1f}", flush=True)


def mpiexec():
    beside = pathlib.Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if not found:
        sys.exit("no mpiexec: pip install 'pylayers[mpi]'")
    return found


def measure(name, ranks):
    env = dict(os.environ, PYLAYERS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    result = subprocess.run([mpiexec(), "-n", str(ranks), sys.executable, __file__,
                             "--worker", name], env=env, capture_output=True, text=True,
                            timeout=600)
    if result.returncode != 0:
        sys.exit(result.stderr[-3000:])
    return float(result.stdout.split("samples/s")[-1].split()[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=list(MODELS))
    parser.add_argument("--worker", choices=list(MODELS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    print(f"one training epoch, global batch {GLOBAL_BATCH}, 1 thread per rank, "
          f"median of {args.repeats} runs ({os.cpu_count()} CPUs)")
    for name in args.models:
        runs = {1: [], 2: []}
        for _ in range(args.repeats):
            for ranks in runs:
                runs[ranks].append(measure(name, ranks))
        one, two = (statistics.median(runs[r]) for r in (1, 2))
        print(f"{MODELS[name][0]} ({MODELS[name][1]} samples):")
        for ranks in runs:
            print(f"  {ranks} rank(s): {statistics.median(runs[ranks]):8.1f} samples/s   "
                  f"runs {', '.join(f'{v:.0f}' for v in runs[ranks])}")
        print(f"  speed-up 2 ranks / 1 rank: {two / one:.2f}x")


if __name__ == "__main__":
    main()
