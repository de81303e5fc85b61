"""Train the brief's MLP on the bundled 8x8 digits data-parallel over MPI processes.

    mpiexec -n 2 python examples/train_distributed.py [--epochs 30] [--batch-size 32]
    python examples/train_distributed.py            # one process: the same script

Every process runs this same file on the same data. `--batch-size` is per process, as
in Horovod: each step trains on batch-size x processes samples, each process computing
the gradient of its own share, averaged over the processes before every update. Only
rank 0 prints and saves. Give each process one thread when they share a machine:
`PYLAYERS_NUM_THREADS=1 mpiexec -n 2 python examples/train_distributed.py`.
"""
import argparse
import contextlib

import pylayers as keras
from pylayers import layers


def strategy_or_none():
    """An MPIStrategy when mpi4py is installed (a world of 1 without mpiexec), else None."""
    try:
        return keras.distribute.MPIStrategy()
    except ImportError as error:
        print(f"{error}\nTraining in this one process without MPI.")
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32, help="samples per process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="digits_mlp_distributed.keras")
    args = parser.parse_args()

    strategy = strategy_or_none()
    rank, size = (0, 1) if strategy is None else (strategy.rank, strategy.size)
    keras.utils.set_random_seed(args.seed)      # rank 0's weights and shuffle are used
    (x_train, y_train), (x_test, y_test) = keras.datasets.digits.load_data()
    x_train = x_train.reshape(len(x_train), -1).astype("float32") / 16.0
    x_test = x_test.reshape(len(x_test), -1).astype("float32") / 16.0

    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = keras.Sequential([
            layers.Dense(64, activation="relu", input_shape=(64,)),
            layers.Dense(10, activation="softmax"),
        ])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    if rank == 0:
        model.summary()
        print(f"{size} process(es) x batch {args.batch_size} = global batch "
              f"{size * args.batch_size}, {keras.get_num_threads()} thread(s) each")
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
              validation_split=0.1, verbose=1)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)   # local: the same on every rank
    model.save(args.output)                                      # writes on rank 0 only
    if rank == 0:
        print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f} "
              f"({len(x_test)} held-out digits, {size} process(es))")
        print(f"saved {args.output}")


if __name__ == "__main__":
    main()
