"""Data-parallel training across processes with MPI, the way Horovod does it.

    strategy = pylayers.distribute.MPIStrategy()
    with strategy.scope():
        model = keras.Sequential([...])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=64, epochs=5)      # 64 samples per rank and step

launched as `mpiexec -n 2 python train.py`. Every rank runs the same script on the same
full data set and holds a replica of the model; `fit` broadcasts the weights from rank 0,
gives each rank its shard of every global batch (per-rank `batch_size` x number of
ranks, in one shuffle drawn by rank 0), averages the gradients with one allreduce before
each optimizer step and averages the logs over all samples, so the training equals one
process with the global batch size. Only rank 0 prints progress and writes files.

Importing this package does not import mpi4py; `MPIStrategy()` does
(`pip install "pylayers[mpi]"`)."""
import contextlib

__all__ = ["MPIStrategy", "get_strategy", "has_strategy"]

_scopes = []


def get_strategy():
    """The strategy of the innermost `strategy.scope()` that is open, or None."""
    return _scopes[-1] if _scopes else None


def has_strategy():
    """Whether a `strategy.scope()` is open."""
    return bool(_scopes)


@contextlib.contextmanager
def _scope(strategy):
    _scopes.append(strategy)
    try:
        yield strategy
    finally:
        _scopes.pop()


from pylayers.distribute.mpi_strategy import MPIStrategy  # noqa: E402  (needs _scope)
