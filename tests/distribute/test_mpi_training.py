"""Data-parallel training on MPI (pylayers.distribute): 2 ranks launched with mpiexec on
this machine against one process, a rank that fails, and the strategy in one process."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'pylayers[mpi]')")

import pylayers as keras  # noqa: E402
from pylayers import distribute, layers  # noqa: E402

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
import mpi_train_script as script  # noqa: E402


def mpiexec():
    """The mpiexec beside this Python (the venv's, from PyPI's mpich), else on PATH."""
    beside = pathlib.Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    assert found, "mpi4py is installed but no mpiexec was found (pip install mpich)"
    return found


def launch(script_name, *args, ranks=2, timeout=120):
    """Run `mpiexec -n ranks python script args`; kill the whole job past `timeout`."""
    env = dict(os.environ, PYLAYERS_NUM_THREADS="1")
    command = [mpiexec(), "-n", str(ranks), sys.executable, str(HERE / script_name), *args]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        alive = process.poll() is None   # mpiexec itself, or only a child holding the pipes
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"`{' '.join(command)}` still ran after {timeout} s: a rank hung "
                    f"(mpiexec {'still running' if alive else 'had exited'}); "
                    f"stdout ends {stdout[-1000:]!r}, stderr ends {stderr[-2000:]!r}")
    return process.returncode, stdout, stderr


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Every config of mpi_train_script.py trained once by 2 ranks: the output folder."""
    out = tmp_path_factory.mktemp("mpi")
    code, stdout, stderr = launch("mpi_train_script.py", str(out))
    assert code == 0, stderr[-4000:]
    return out, stdout


@pytest.fixture
def one_thread():
    """The single-process reference runs on 1 thread, as each rank does: the CNN's
    max-pooling can route a gradient differently after a rounding difference."""
    threads = keras.get_num_threads()
    keras.set_num_threads(1)
    yield
    keras.set_num_threads(threads)


def load_weights(path):
    with np.load(path) as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]


@pytest.mark.parametrize("name", list(script.CONFIGS))
def test_two_ranks_of_batch_64_train_as_one_process_of_batch_128(two_ranks, name,
                                                                   one_thread):
    out, _ = two_ranks
    per_rank_batch = script.CONFIGS[name][3]
    weights, history = script.train(name, 2 * per_rank_batch)   # one process, no MPI
    rank0 = load_weights(out / f"{name}.rank0.npz")
    rank1 = load_weights(out / f"{name}.rank1.npz")
    assert [w.shape for w in rank0] == [w.shape for w in weights]
    for single, distributed in zip(weights, rank0):
        np.testing.assert_allclose(distributed, single, rtol=0, atol=1e-5)
    for replica0, replica1 in zip(rank0, rank1):     # the replicas stay identical
        np.testing.assert_array_equal(replica0, replica1)
    for rank in (0, 1):   # logs averaged over both ranks' samples equal one process's
        logged = json.loads((out / f"{name}.rank{rank}.json").read_text())
        assert sorted(logged) == sorted(history)
        for key in history:
            np.testing.assert_allclose(logged[key], history[key], rtol=1e-6)


def test_single_process_run_is_not_trivially_equal(two_ranks, one_thread):
    """The comparison above can fail: a batch of 64 in one process gives other weights."""
    out, _ = two_ranks
    weights, _ = script.train("mlp-adam", 64)
    distributed = load_weights(out / "mlp-adam.rank0.npz")
    assert max(np.abs(a - b).max() for a, b in zip(weights, distributed)) > 1e-3


def test_only_rank_0_prints_progress_and_writes_files(two_ranks):
    out, stdout = two_ranks
    assert stdout.count("Epoch 1/2") == 1
    for stem in ("checkpoint{}.keras", "log{}.csv", "lambda{}.keras"):
        assert (out / stem.format(0)).exists()
        assert not (out / stem.format(1)).exists()
    model = keras.models.load_model(out / "checkpoint0.keras")
    assert [w.shape for w in model.get_weights()] == [(784, 64), (64,), (64, 10), (10,)]


def test_batch_norm_moving_statistics_are_averaged_over_ranks(two_ranks):
    out, _ = two_ranks
    rank0 = load_weights(out / "batch_norm.rank0.npz")
    rank1 = load_weights(out / "batch_norm.rank1.npz")
    moving_mean, moving_variance = rank0
    assert np.abs(moving_mean).max() > 1e-3 and np.abs(moving_variance - 1).max() > 1e-3
    for a, b in zip(rank0, rank1):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode, message", [
    ("exit", None),
    ("raise", "rank 1 of 2 failed with RuntimeError: rank 1 failed on purpose"),
    ("data", "every rank passes the same full data set"),
    ("one", "fit() received 1 samples for 2 processes"),
])
def test_a_failing_rank_ends_the_whole_job(mode, message):
    code, stdout, stderr = launch("mpi_failing_rank_script.py", mode, timeout=60)
    assert code != 0
    assert "fit returned" not in stdout
    if message is not None:
        assert message in stderr, stderr[-3000:]


# ---- the strategy in this one process (a world of size 1) --------------------------

def mlp():
    return keras.Sequential([layers.Input((8,)), layers.Dense(4, activation="relu"),
                             layers.Dense(3, activation="softmax")])


def test_one_rank_strategy_trains_exactly_as_without_it():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50, 8)).astype(np.float32), rng.integers(0, 3, 50)
    runs = []
    for strategy in (None, distribute.MPIStrategy()):
        keras.utils.set_random_seed(3)
        model = mlp()
        if strategy is None:
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        else:
            with strategy.scope():
                model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
            assert model._distribution is not None
        history = model.fit(x, y, batch_size=16, epochs=2, validation_split=0.2, verbose=0)
        runs.append((model.get_weights(), history.history))
    for a, b in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(a, b)
    assert runs[0][1] == runs[1][1]


def test_scope_is_entered_and_left():
    strategy = distribute.MPIStrategy()
    assert strategy.rank == 0 and strategy.size == strategy.num_replicas_in_sync == 1
    assert distribute.get_strategy() is None
    with strategy.scope():
        assert distribute.get_strategy() is strategy
    assert distribute.get_strategy() is None
    model = mlp()
    model.compile(optimizer="sgd", loss="mse")
    assert model._distribution is None


def test_misuse_is_a_clear_error():
    with pytest.raises(TypeError, match="intracommunicator"):
        distribute.MPIStrategy(comm="world")
    strategy = distribute.MPIStrategy()
    with strategy.scope(), pytest.raises(ValueError, match="reduction='sum'"):
        mlp().compile(optimizer="sgd",
                      loss=keras.losses.SparseCategoricalCrossentropy(reduction="sum"))


def test_example_runs_under_mpiexec_and_alone(tmp_path):
    example = str(HERE.parent.parent / "examples" / "train_distributed.py")
    env = dict(os.environ, PYLAYERS_NUM_THREADS="1")
    arguments = [example, "--epochs", "2", "--batch-size", "32"]
    logs = []
    for command in ([mpiexec(), "-n", "2", sys.executable, *arguments],
                    [sys.executable, *arguments[:-1], "64"]):
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True,
                                stdin=subprocess.DEVNULL, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.count("test accuracy") == 1
        assert (tmp_path / "digits_mlp_distributed.keras").exists()
        logs.append([line.split("step - ")[1] for line in result.stdout.splitlines()
                     if "step - " in line])
    assert len(logs[0]) == 2 and logs[0] == logs[1]   # 2 x 32 trains as 1 x 64
