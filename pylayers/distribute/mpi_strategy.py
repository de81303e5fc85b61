"""MPIStrategy and the per-model replica that `fit` talks to.

What a training step does on every rank (Horovod's recipe):
  1. the rank's shard of the global batch runs forward and backward on its replica;
  2. every trainable variable's gradient lives in one flat float32 buffer (the
     gradients are views into it); the buffer, scaled by the rank's sample count, and
     that count in a last slot, are summed with one in-place `Allreduce`, then divided
     by the total count: the gradient of the mean loss over the global batch, exactly,
     also when a last partial batch splits unevenly (with equal shards this is the plain
     average over ranks);
  3. regularizer gradients (the same on every rank) are added and the optimizer steps,
     the same update on every replica.
The logs are every rank's metric states summed (totals and counts), so they are the
values one process would log over the global batches.

Every rank must make the same calls in the same order: callbacks that stop training
(EarlyStopping, TerminateOnNaN, ...) decide from these logs, the same on every rank; a
callback of one's own that stops one rank only leaves the others waiting."""
import contextlib
import sys
import time
import traceback
import weakref

import numpy as np

from pylayers.utils.rng import global_rng

# Seconds a failing rank waits, its error printed, before aborting the job.
ABORT_DRAIN_SECONDS = 0.5
# Losses whose reduction is a mean over the samples: averaging by sample count is exact.
_MEAN_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


class MPIStrategy:
    """Data-parallel training over the processes of an MPI communicator.

    Create it in every process of `mpiexec -n N python script.py`, then build and
    compile the model inside `with strategy.scope():`. `fit(batch_size=B)` then takes B
    samples per rank and step: the global batch is B x N (as in Horovod; to keep the
    single-process batch size, divide it by `strategy.num_replicas_in_sync`).

    Args:
        comm: an mpi4py intracommunicator; default `MPI.COMM_WORLD`.

    Attributes:
        comm, rank, size (= `num_replicas_in_sync`).
    """

    def __init__(self, comm=None):
        try:
            from mpi4py import MPI
        except ImportError as error:
            raise ImportError("MPIStrategy needs mpi4py and an MPI library. Install them "
                              'with: pip install "pylayers[mpi]"  (mpi4py and mpich)') from error
        if comm is None:
            comm = MPI.COMM_WORLD
        if not isinstance(comm, MPI.Intracomm):
            raise TypeError("MPIStrategy expects an mpi4py intracommunicator such as "
                            f"MPI.COMM_WORLD. Received: comm={comm!r}")
        self._MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()

    @property
    def num_replicas_in_sync(self):
        return self.size

    @property
    def is_chief(self):
        """True on rank 0, the rank that prints and writes files."""
        return self.rank == 0

    def scope(self):
        """`with strategy.scope():` models compiled inside train data-parallel."""
        from pylayers.distribute import _scope
        return _scope(self)

    def broadcast_weights(self, model):
        """Copy rank 0's weights (and optimizer state, if built) to every rank. `fit`
        does it at its start; call it after loading weights on rank 0 only."""
        _Replica(self, model).broadcast_weights()

    def _replica(self, model):
        return _Replica(self, model)

    def __repr__(self):
        return f"<MPIStrategy rank={self.rank} size={self.size}>"


class _Replica:
    """One model's side of an MPIStrategy: held by the model as `model._distribution`
    (set by `compile` inside `strategy.scope()`); the fit loop calls its methods."""

    def __init__(self, strategy, model):
        reductions = {getattr(loss, "reduction", "sum_over_batch_size")
                      for loss in getattr(model, "_output_losses", [])}
        unsupported = sorted(str(r) for r in reductions - set(_MEAN_REDUCTIONS))
        if unsupported:
            raise ValueError(f"Model '{model.name}': data-parallel training averages losses "
                             "that are means over the samples (reduction "
                             f"'sum_over_batch_size'); it cannot train a loss with "
                             f"reduction={unsupported[0]!r}.")
        self.strategy = strategy
        self.comm = strategy.comm
        self.rank = strategy.rank
        self.size = strategy.size
        self._model = weakref.ref(model)
        self._synced = False
        self._flat = None          # (variable ids, flat float32 buffer, per-variable views)

    @property
    def model(self):
        return self._model()

    # ---- fit: arguments, data ----------------------------------------------------------

    def prepare_fit(self, batch_size, verbose, callbacks, validation, samples):
        """At the start of `fit`: (global batch size, verbose, callbacks, this rank's
        validation shard). Checks every rank passed the same number of samples."""
        counts = self.comm.allgather((int(samples), int(batch_size)))
        if len(set(counts)) > 1:
            raise ValueError("With MPIStrategy every rank passes the same full data set and "
                             "the same per-rank batch_size to fit(); each rank takes its own "
                             "shard of every global batch. Received (samples, batch_size) "
                             f"per rank: {counts}")
        if samples < self.size:
            raise ValueError(f"fit() received {samples} samples for {self.size} processes: "
                             "data-parallel training needs at least one sample per process.")
        self._synced = False            # broadcast rank 0's weights before the first step
        if self.rank != 0:
            from pylayers.callbacks import CSVLogger, ModelCheckpoint, ProgbarLogger
            verbose = 0
            callbacks = [c for c in _flatten(callbacks)
                         if not isinstance(c, (CSVLogger, ModelCheckpoint, ProgbarLogger))]
        if validation is not None:
            xs, ys, weights = validation
            bounds = self._shard_bounds(0, len(xs[0]))
            validation = ([a[bounds] for a in xs], [t[bounds] for t in ys],
                          None if weights is None else weights[bounds])
        return batch_size * self.size, verbose, callbacks, validation

    def shard_batches(self, samples, global_batch_size, shuffle):
        """This rank's part of each global batch: the global order is rank 0's
        permutation (drawn from its generator as one process would), sent to all."""
        order = None
        if shuffle:
            order = global_rng().permutation(samples) if self.rank == 0 \
                else np.empty(samples, dtype=np.int64)
            order = np.ascontiguousarray(order, dtype=np.int64)
            self.comm.Bcast(order, root=0)
        for start in range(0, samples, global_batch_size):
            bounds = self._shard_bounds(start, min(start + global_batch_size, samples))
            yield bounds if order is None else order[bounds]

    def _shard_bounds(self, start, stop):
        """Rank r's contiguous part of [start, stop): sizes differ by at most one, the
        first (stop - start) % size ranks take one more; fewer samples than ranks leave
        the last ranks without samples for that step."""
        base, extra = divmod(stop - start, self.size)
        low = start + self.rank * base + min(self.rank, extra)
        return slice(low, low + base + (self.rank < extra))

    # ---- one step ----------------------------------------------------------------------

    def prepare_step(self, xs):
        """Before a training step: broadcast rank 0's weights once per fit (building
        the model first if its first call builds it). Returns whether this rank has
        samples in this step."""
        model = self.model
        if not self._synced:
            if not model.built and len(xs[0]):
                model._predict_batch([a[:1] for a in xs])
            self.broadcast_weights()
        return len(xs[0]) > 0

    def step_without_samples(self):
        """A rank whose shard is empty (a last global batch smaller than the number of
        ranks) still takes part: zero gradients to the allreduce, then the same
        optimizer step as the others. Metrics count no sample."""
        model = self.model
        variables = model.trainable_weights
        for variable in variables:
            variable.zero_grad()
        self.average_gradients(variables, 0)
        model._regularization_step(variables)
        model.optimizer.apply([v.grad for v in variables], variables)
        return None

    def average_gradients(self, variables, samples):
        """Replace each variable's .grad by the sample-weighted mean over all ranks (one
        in-place Allreduce on one flat float32 buffer). `samples`: this rank's count."""
        views, flat = self._gradient_buffer(variables)
        for variable, view in zip(variables, views):
            if variable.grad is not view:       # first step, or a layer rebound .grad
                view[...] = variable.grad
                variable.grad = view
        grads = flat[:-1]
        if samples != 1:
            grads *= np.float32(samples)
        flat[-1] = samples
        self.comm.Allreduce(self.strategy._MPI.IN_PLACE, flat, op=self.strategy._MPI.SUM)
        total = float(flat[-1])
        if total == 0:
            raise RuntimeError("MPIStrategy: a training step with no sample on any rank")
        if total != 1:
            grads /= np.float32(total)

    def _gradient_buffer(self, variables):
        ids = tuple(id(v) for v in variables)
        if self._flat is None or self._flat[0] != ids:
            sizes = [v.value.size for v in variables]
            flat = np.zeros(sum(sizes) + 1, dtype=np.float32)
            views, offset = [], 0
            for variable, size in zip(variables, sizes):
                views.append(flat[offset:offset + size].reshape(variable.shape))
                offset += size
            self._flat = (ids, flat, views)
        return self._flat[2], self._flat[1]

    # ---- logs, epochs, files -----------------------------------------------------------

    def global_logs(self):
        """The model's logs over every rank's samples: metric states (totals, counts,
        confusion counts) summed over the ranks, the local states left as they were."""
        model = self.model
        states = [v for metric in model.metrics for v in metric.variables]
        if not states:
            return model._logs()
        local = np.concatenate([np.ravel(v) for v in states]).astype(np.float64)
        summed = np.empty_like(local)
        self.comm.Allreduce(local, summed, op=self.strategy._MPI.SUM)
        _scatter(summed, states)
        try:
            return model._logs()
        finally:
            _scatter(local, states)

    def end_epoch(self):
        """Average the non-trainable weights (BatchNormalization's moving statistics,
        which each rank updates from its own shards) over the ranks, in float64 so
        weights equal on every rank stay exactly as they are."""
        weights = [v for v in self.model.non_trainable_weights]
        if not weights or self.size == 1:
            return
        flat = np.concatenate([v.value.ravel() for v in weights]).astype(np.float64)
        self.comm.Allreduce(self.strategy._MPI.IN_PLACE, flat, op=self.strategy._MPI.SUM)
        flat /= self.size
        _scatter(flat, [v.value for v in weights])

    def should_write(self):
        """Only rank 0 writes model files (`save`, `save_weights`, checkpoints)."""
        return self.rank == 0

    @contextlib.contextmanager
    def abort_on_error(self):
        """An exception on one rank aborts every rank (MPI_Abort): the others would
        otherwise wait forever in their next collective call."""
        try:
            yield
        except BaseException as error:
            if self.size > 1:
                traceback.print_exc()
                print(f"pylayers.distribute: rank {self.rank} of {self.size} failed with "
                      f"{type(error).__name__}: {error}; aborting every rank (MPI_Abort).",
                      file=sys.stderr, flush=True)
                sys.stdout.flush()
                # mpiexec forwards output through pipes and stops reading them when the
                # job aborts: give it a moment to pass these lines on
                time.sleep(ABORT_DRAIN_SECONDS)
                self.comm.Abort(1)
            raise

    # ---- weights -----------------------------------------------------------------------

    def broadcast_weights(self):
        """Rank 0's weights (one flat Bcast) and optimizer state to every rank."""
        model = self.model
        weights = model.weights
        shapes = [tuple(v.shape) for v in weights]
        all_shapes = self.comm.allgather(shapes)
        for rank, other in enumerate(all_shapes):
            if other != all_shapes[0]:
                raise ValueError(f"Model '{model.name}' differs between ranks: rank 0 has "
                                 f"weights of shapes {all_shapes[0]}, rank {rank} has "
                                 f"{other}. Every rank must build the same model.")
        if weights:
            flat = np.concatenate([v.value.ravel() for v in weights]) if self.rank == 0 \
                else np.empty(sum(int(np.prod(s)) for s in shapes), dtype=np.float32)
            self.comm.Bcast(flat, root=0)
            if self.rank != 0:
                _scatter(flat, [v.value for v in weights])
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None:
            state = self.comm.bcast(optimizer.variables if optimizer.built else None, root=0)
            if state is not None and self.rank != 0:
                optimizer.build(model.trainable_weights)
                optimizer.set_weights(state)
        self._synced = True


def _scatter(flat, arrays):
    """Copy consecutive pieces of `flat` into `arrays` (in place)."""
    offset = 0
    for array in arrays:
        size = array.size
        array[...] = flat[offset:offset + size].reshape(array.shape)
        offset += size


def _flatten(callbacks):
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        return [callbacks]
    flat = []
    for callback in callbacks:
        flat.extend(_flatten(callback) if isinstance(callback, (list, tuple)) else [callback])
    return flat
