"""pl_sgemm through its wrappers (sgemm, matmul, matmul_into) against float64 numpy.

Error bound.  Every element of C is a sum of K products plus alpha/beta scaling; in
float32 with any summation order (blocked, FMA or not) each term passes through at most
K + 3 roundings, so |err_ij| <= (K + 4) * u * (|alpha| * (|A| @ |B|)_ij + |beta| * |C_ij|)
with u = 2**-24 (Higham, Accuracy and Stability, sec. 3.1, gamma_n with n = K + 4).
That is a relative error of about 6e-8 * K, elementwise: stricter than 1e-5 * K * max|a| *
max|b|, and still a rigorous bound, so the tests cannot fail from an unlucky draw."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pylayers
from pylayers._kernels import gemm

UNIT_ROUNDOFF = 2.0 ** -24


def available_kernel_paths():
    """Every micro-kernel path this CPU can run, in ISA order."""
    original, paths = pylayers.get_kernel_path(), []
    for name in ("generic", "avx2", "avx512"):
        try:
            pylayers.set_kernel_path(name)
        except ValueError:
            continue
        paths.append(name)
    pylayers.set_kernel_path(original)
    return paths


KERNEL_PATHS = available_kernel_paths()


@pytest.fixture(params=KERNEL_PATHS)
def kernel_path(request):
    original = pylayers.get_kernel_path()
    pylayers.set_kernel_path(request.param)
    yield request.param
    pylayers.set_kernel_path(original)


@pytest.fixture
def threads():
    """Sets the thread budget for one test and restores it."""
    original = pylayers.get_num_threads()
    yield pylayers.set_num_threads
    pylayers.set_num_threads(original)


def random_matrix(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def strided(rng, rows, cols, layout):
    """A float32 (rows, cols) view: contiguous, with a padded row stride ('sliced'),
    transposed (F-contiguous) or every other element ('gapped')."""
    if layout == "sliced":
        return random_matrix(rng, (rows, cols + 3))[:, 1:cols + 1]
    if layout == "transposed":
        return random_matrix(rng, (cols, rows)).T
    if layout == "gapped":
        return random_matrix(rng, (2 * rows, 2 * cols))[::2, ::2]
    return random_matrix(rng, (rows, cols))


def assert_close(result, a_op, b_op, alpha=1.0, beta=0.0, c_before=None):
    """result ~= alpha * a_op @ b_op + beta * c_before within the bound above."""
    a64, b64 = np.asarray(a_op, np.float64), np.asarray(b_op, np.float64)
    expected = alpha * (a64 @ b64)
    magnitude = abs(alpha) * (np.abs(a64) @ np.abs(b64))
    if beta != 0.0:
        expected = expected + beta * c_before.astype(np.float64)
        magnitude = magnitude + abs(beta) * np.abs(c_before.astype(np.float64))
    k = a64.shape[-1]
    bound = (k + 4) * UNIT_ROUNDOFF * magnitude + 1e-37
    assert result.shape == expected.shape
    excess = np.abs(result.astype(np.float64) - expected) - bound
    assert np.all(excess <= 0), f"worst excess over the bound: {excess.max()}"


dims = st.integers(0, 300)
rows = st.one_of(st.integers(1, 8), dims)   # m <= 8 streams B unpacked: drawn often
scalars = st.sampled_from([0.0, 1.0, -0.5, 2.5])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fixture sets a path only
@given(m=rows, n=dims, k=dims, trans_a=st.booleans(), trans_b=st.booleans(),
       alpha=scalars, beta=scalars, sliced=st.booleans(), seed=st.integers(0, 2 ** 16))
@pytest.mark.parametrize("entry", ["sgemm", "sgemm_packed_b"])
def test_sgemm_matches_float64_reference(kernel_path, entry, m, n, k, trans_a, trans_b, alpha,
                                         beta, sliced, seed):
    rng = np.random.default_rng(seed)
    layout = "sliced" if sliced else "contiguous"
    a = strided(rng, *((k, m) if trans_a else (m, k)), layout)
    b = strided(rng, *((n, k) if trans_b else (k, n)), layout)
    c_storage = random_matrix(rng, (m, n + 5))
    c = c_storage[:, 2:n + 2]   # leading dimension n + 5
    c_before, storage_before = c.copy(), c_storage.copy()
    getattr(gemm, entry)(a, b, c, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta)
    assert_close(c, a.T if trans_a else a, b.T if trans_b else b, alpha, beta, c_before)
    np.testing.assert_array_equal(c_storage[:, :2], storage_before[:, :2])
    np.testing.assert_array_equal(c_storage[:, n + 2:], storage_before[:, n + 2:])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fixture sets a path only
@given(m=rows, n=dims, k=dims, layout_a=st.sampled_from(["contiguous", "sliced", "transposed", "gapped"]),
       layout_b=st.sampled_from(["contiguous", "sliced", "transposed", "gapped"]),
       seed=st.integers(0, 2 ** 16))
def test_matmul_any_layout_matches_reference(kernel_path, m, n, k, layout_a, layout_b, seed):
    rng = np.random.default_rng(seed)
    a, b = strided(rng, m, k, layout_a), strided(rng, k, n, layout_b)
    result = gemm.matmul(a, b)
    assert result.dtype == np.float32 and result.flags.c_contiguous
    assert_close(result, a, b)


def test_padding_outside_c_is_untouched(kernel_path):
    rng = np.random.default_rng(1)
    a, b = random_matrix(rng, (70, 40)), random_matrix(rng, (40, 50))
    storage = np.full((70, 60), 7.0, np.float32)
    gemm.sgemm(a, b, storage[:, 3:53])
    assert np.all(storage[:, :3] == 7.0) and np.all(storage[:, 53:] == 7.0)
    assert_close(storage[:, 3:53], a, b)


@pytest.mark.parametrize("shape", [(5, 6, 7), (200, 180, 300), (1, 1000, 700), (3, 77, 45)])
def test_beta_zero_ignores_nan_in_c(kernel_path, shape):
    m, n, k = shape
    rng = np.random.default_rng(2)
    a, b = random_matrix(rng, (m, k)), random_matrix(rng, (k, n))
    c = np.full((m, n), np.nan, np.float32)
    gemm.sgemm(a, b, c, beta=0.0)
    assert_close(c, a, b)


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_k_zero_scales_c(kernel_path, beta):
    c = np.full((4, 3), 2.0, np.float32)
    gemm.sgemm(np.zeros((4, 0), np.float32), np.zeros((0, 3), np.float32), c, beta=beta)
    np.testing.assert_array_equal(c, np.full((4, 3), 2.0 * beta, np.float32))


def test_alpha_zero_does_not_read_a_or_b(kernel_path):
    a = np.full((30, 40), np.nan, np.float32)
    b = np.ones((40, 20), np.float32)
    c = np.ones((30, 20), np.float32)
    gemm.sgemm(a, b, c, alpha=0.0, beta=3.0)
    np.testing.assert_array_equal(c, np.full((30, 20), 3.0, np.float32))


def test_reference_kernel_agrees(kernel_path):
    rng = np.random.default_rng(3)
    a, b = random_matrix(rng, (150, 90)), random_matrix(rng, (70, 90))
    fast, naive = np.empty((150, 70), np.float32), np.empty((150, 70), np.float32)
    gemm.sgemm(a, b, fast, trans_b=True)
    gemm.sgemm_reference(a, b, naive, trans_b=True)
    assert_close(fast, a, b.T)
    assert_close(naive, a, b.T)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.int64, np.uint8])
def test_other_dtypes_are_converted(dtype):
    rng = np.random.default_rng(4)
    a = (rng.standard_normal((9, 11)) * 5).astype(dtype)
    b = (rng.standard_normal((11, 6)) * 5).astype(dtype)
    result = gemm.matmul(a, b)
    assert result.dtype == np.float32
    assert_close(result, a.astype(np.float32), b.astype(np.float32))


@pytest.mark.parametrize("a_shape, b_shape", [
    ((7,), (7,)), ((7,), (7, 3)), ((4, 7), (7,)), ((2, 4, 7), (7,)), ((7,), (5, 7, 3)),
    ((2, 1, 4, 7), (5, 7, 3)), ((3, 4, 7), (1, 7, 2)), ((1, 4, 7), (6, 7, 2)),
    ((2, 3, 40, 50), (50, 60)), ((8, 30, 20), (8, 20, 25)),
    ((0, 4, 7), (7, 3)), ((2, 0, 7), (2, 7, 3)), ((2, 4, 0), (2, 0, 3)), ((4, 7), (7, 0)),
])
def test_matmul_follows_numpy_semantics(kernel_path, a_shape, b_shape):
    rng = np.random.default_rng(5)
    a, b = random_matrix(rng, a_shape), random_matrix(rng, b_shape)
    result = np.asarray(gemm.matmul(a, b))
    expected = np.matmul(a.astype(np.float64), b.astype(np.float64))
    assert result.shape == expected.shape and result.dtype == np.float32
    bound = (a_shape[-1] + 4) * UNIT_ROUNDOFF * np.matmul(np.abs(a).astype(np.float64),
                                                          np.abs(b).astype(np.float64))
    assert np.all(np.abs(result - expected) <= bound + 1e-37)


def test_matmul_1d_dot_returns_scalar():
    result = gemm.matmul(np.arange(3, dtype=np.float32), np.arange(3, dtype=np.float32))
    assert np.ndim(result) == 0 and result == 5.0


def test_matmul_batched_with_transposed_and_broadcast_views(kernel_path):
    rng = np.random.default_rng(6)
    a = random_matrix(rng, (3, 40, 30)).transpose(0, 2, 1)      # (3, 30, 40), each matrix F-order
    b = np.broadcast_to(random_matrix(rng, (40, 20)), (3, 40, 20))  # batch stride 0
    result = gemm.matmul(a, b)
    for i in range(3):
        assert_close(result[i], a[i], b[i])


def test_matmul_into_accumulates_weight_gradient(kernel_path):
    rng = np.random.default_rng(7)
    x, dy = random_matrix(rng, (128, 78)), random_matrix(rng, (128, 64))
    dw = random_matrix(rng, (78, 64))
    dw_before = dw.copy()
    assert gemm.matmul_into(x, dy, dw, trans_a=True, beta=1.0) is dw
    assert_close(dw, x.T, dy, 1.0, 1.0, dw_before)
    dx = np.empty((128, 78), np.float32)
    w = random_matrix(rng, (78, 64))
    gemm.matmul_into(dy, w, dx, trans_b=True)
    assert_close(dx, dy, w.T)


@pytest.mark.parametrize("shape", [(300, 257, 520), (1024, 64, 784), (9, 1000, 700),
                                   (128, 512, 784)])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_one_and_two_threads_bitwise_identical(kernel_path, threads, shape, trans_a, trans_b):
    m, n, k = shape
    rng = np.random.default_rng(8)
    a = random_matrix(rng, (k, m) if trans_a else (m, k))
    b = random_matrix(rng, (n, k) if trans_b else (k, n))
    results = []
    for n_threads in (1, 2):
        threads(n_threads)
        c = np.ones((m, n), np.float32)
        gemm.sgemm(a, b, c, trans_a=trans_a, trans_b=trans_b, alpha=0.7, beta=0.3)
        results.append(c)
    assert np.array_equal(results[0], results[1])


@pytest.mark.parametrize("m", range(1, 9))
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_few_rows_one_and_two_threads_bitwise_identical(kernel_path, threads, m, trans_a,
                                                        trans_b):
    """Products of m <= 8 rows stream B unpacked and split its columns between threads
    (n = 1001 leaves a partial last vector); n * k (over 2**20 elements of B) is large
    enough for two threads."""
    n, k = 1001, 1100
    rng = np.random.default_rng(13)
    a = random_matrix(rng, (k, m) if trans_a else (m, k))
    b = random_matrix(rng, (n, k) if trans_b else (k, n))
    c_before = random_matrix(rng, (m, n))
    results = []
    for n_threads in (1, 2):
        threads(n_threads)
        c = c_before.copy()
        gemm.sgemm(a, b, c, trans_a=trans_a, trans_b=trans_b, alpha=0.7, beta=0.3)
        results.append(c)
    assert np.array_equal(results[0], results[1])
    assert_close(results[0], a.T if trans_a else a, b.T if trans_b else b, 0.7, 0.3, c_before)


@pytest.mark.parametrize("m", [1, 3, 8])
@pytest.mark.parametrize("n, k", [(512, 784), (512, 512), (300, 877), (4100, 70), (700, 131)])
@pytest.mark.parametrize("beta", [0.0, 0.3])
def test_few_rows_large_b_sliced_by_depth_on_any_thread_count(kernel_path, threads, m, n,
                                                               k, beta):
    """A few rows times a large B stored (k, n) is cut into depth slices fixed by the shape
    (gemm.c: depth_slices; 512 x 512 is the smallest B cut), each thread summing whole
    slices of contiguous rows, then the slices added in order: the same bits on 1, 2 and
    3 threads, within the bound of the reference, and C's padding untouched."""
    rng = np.random.default_rng(n * k + m)
    a, b = random_matrix(rng, (m, k)), random_matrix(rng, (k, n))
    c_storage = random_matrix(rng, (m, n + 4))
    results = []
    for n_threads in (1, 2, 3):
        threads(n_threads)
        c = c_storage.copy()
        gemm.sgemm(a, b, c[:, 2:n + 2], alpha=0.7, beta=beta)
        np.testing.assert_array_equal(c[:, :2], c_storage[:, :2])
        np.testing.assert_array_equal(c[:, n + 2:], c_storage[:, n + 2:])
        results.append(c[:, 2:n + 2])
    for other in results[1:]:
        assert np.array_equal(results[0], other)
    assert_close(results[0], a, b, 0.7, beta, c_storage[:, 2:n + 2])


@pytest.mark.parametrize("n", [1, 7, 8, 9, 10, 16])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 7, 5408])
@pytest.mark.parametrize("trans_a", [False, True])
def test_narrow_products_match_the_reference(kernel_path, threads, n, k, trans_a):
    """Products of m <= 8 rows and n <= 16 columns (a Dense(10) at batch 1) sum each
    element in four chains over k: k % 4 covers every tail; b is a slice of wider rows,
    so a read past a row's columns would mix in its neighbours; the same bits on 1 and
    2 threads."""
    rng = np.random.default_rng(k * 17 + n)
    for m in (1, 3, 8):
        a = random_matrix(rng, (k, m) if trans_a else (m, k))
        b = random_matrix(rng, (k, n + 5))[:, 2:n + 2]
        c_before = random_matrix(rng, (m, n))
        results = []
        for n_threads in (1, 2):
            threads(n_threads)
            c = c_before.copy()
            gemm.sgemm(a, b, c, trans_a=trans_a, alpha=0.7, beta=0.3)
            results.append(c)
        assert np.array_equal(results[0], results[1])
        assert_close(results[0], a.T if trans_a else a, b, 0.7, 0.3, c_before)
        c = np.full((m, n), np.nan, np.float32)
        gemm.sgemm(a, b, c, trans_a=trans_a)
        assert_close(c, a.T if trans_a else a, b)


@pytest.mark.parametrize("shape", [(300, 257, 520), (9, 1000, 700), (64, 256, 64), (3, 40, 30),
                                   (16, 20, 30)])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_packed_b_gives_the_bits_of_sgemm(kernel_path, threads, shape, trans_a,
                                          trans_b):
    """B packed beforehand (as the recurrent layers' weights) gives the bits of sgemm,
    for one and two threads; except small products sgemm runs unpacked (more than 8
    rows, at most 32^3 multiply-adds), which the packed loops run instead (gemm.h)."""
    m, n, k = shape
    rng = np.random.default_rng(14)
    a = random_matrix(rng, (k, m) if trans_a else (m, k))
    b = random_matrix(rng, (n, k) if trans_b else (k, n))
    c_before = random_matrix(rng, (m, n))
    results = []
    for n_threads in (1, 2):
        threads(n_threads)
        c = c_before.copy()
        gemm.sgemm_packed_b(a, b, c, trans_a=trans_a, trans_b=trans_b, alpha=0.7, beta=0.3)
        results.append(c)
    assert np.array_equal(results[0], results[1])
    assert_close(results[0], a.T if trans_a else a, b.T if trans_b else b, 0.7, 0.3, c_before)
    if m > 8 and m * n * k <= 32 ** 3:
        return
    unpacked = c_before.copy()
    gemm.sgemm(a, b, unpacked, trans_a=trans_a, trans_b=trans_b, alpha=0.7, beta=0.3)
    assert np.array_equal(results[0], unpacked)


@pytest.mark.parametrize("shape", [(64, 256, 64), (33, 4100, 20), (20, 72, 600), (9, 40, 30)])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("beta", [0.0, 0.3])
def test_serial_packed_b_rows_do_not_depend_on_the_split(kernel_path, shape, trans_b, beta):
    """pl_sgemm_packed_b_serial sums each row on its own: cutting the rows into calls
    anywhere (as the recurrent layers' threads do) gives the bits of one call, and those
    of pl_sgemm_packed_b (more than 8 rows: it packs). The shapes cross the column
    blocks (n > 4080), the depth blocks (k > 256) and partial tiles."""
    m, n, k = shape
    rng = np.random.default_rng(15)
    a = random_matrix(rng, (m, k))
    b = random_matrix(rng, (n, k) if trans_b else (k, n))
    c_before = random_matrix(rng, (m, n))
    whole = gemm.sgemm_packed_b_serial(a, b, c_before.copy(), trans_b=trans_b, beta=beta)
    assert_close(whole, a, b.T if trans_b else b, 1.0, beta, c_before)
    for splits in [(1,), (m // 2,), (5, 7, m - 1)]:
        split = gemm.sgemm_packed_b_serial(a, b, c_before.copy(), trans_b=trans_b, beta=beta,
                                           row_splits=splits)
        assert np.array_equal(split, whole), splits
    packed = c_before.copy()
    gemm.sgemm_packed_b(a, b, packed, trans_b=trans_b, beta=beta)
    assert np.array_equal(packed, whole)


def repeated_two_thread_mismatches(threads, product, repeats=60):
    """product() on one thread, then `repeats` times on two: (the one-thread result, how
    many two-thread results differ from it in any bit).  Races show in a fraction of
    runs, hence the repeats."""
    threads(1)
    one = product()
    threads(2)
    return one, sum(not np.array_equal(one, product()) for _ in range(repeats))


def test_column_split_threads_never_overwrite_each_others_panels(kernel_path, threads):
    """k=700 splits into unequal k blocks (234, 233, 233) and a short m splits the
    columns between threads with no barrier between blocks, so one thread can run a
    k block ahead of the other: each panel must sit at the deepest block's offset."""
    rng = np.random.default_rng(12)
    a, b = random_matrix(rng, (9, 700)), random_matrix(rng, (700, 1000))
    _, mismatches = repeated_two_thread_mismatches(threads, lambda: gemm.matmul(a, b))
    assert mismatches == 0


@pytest.mark.parametrize("trans_b", [False, True])
def test_column_split_threads_own_their_packed_panels_across_column_blocks(kernel_path, threads,
                                                                          trans_b):
    """n = 5408 spans column blocks of unequal widths, and each block's columns are split
    between the threads afresh: a thread a block ahead must not pack into the panels the
    other is still reading (dense backward dx: dy (128, 10) @ W.T, W (5408, 10))."""
    rng = np.random.default_rng(13)
    dy = random_matrix(rng, (128, 10))
    w = random_matrix(rng, (5408, 10) if trans_b else (10, 5408))

    def product():
        out = np.empty((128, 5408), np.float32)
        gemm.matmul_into(dy, w, out, trans_b=trans_b)
        return out
    one, mismatches = repeated_two_thread_mismatches(threads, product)
    assert mismatches == 0
    assert_close(one, dy, w.T if trans_b else w)


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_claimed_column_panels_give_the_bits_of_one_thread(kernel_path, threads, trans_a,
                                                           trans_b):
    """Threads splitting the columns with op(A) in place claim the panels of their ranges
    one at a time and take over what another has left (gemm.c: gemm_thread_claiming):
    whoever computes a panel, it is the one thread's bits, on 2, 3 and 4 threads and
    repeatedly (which thread takes which panel varies from run to run). m = 200 is two
    row blocks, n = 300 ends in a 12-column panel, k = 700 three depth blocks."""
    m, n, k = 200, 300, 700
    rng = np.random.default_rng(16)
    a = random_matrix(rng, (k, m) if trans_a else (m, k))
    b = random_matrix(rng, (n, k) if trans_b else (k, n))
    c0 = random_matrix(rng, (m, n))

    def product():
        c = c0.copy()
        return gemm.sgemm(a, b, c, trans_a=trans_a, trans_b=trans_b, alpha=0.7, beta=0.3)
    threads(1)
    one = product()
    assert_close(one, a.T if trans_a else a, b.T if trans_b else b, 0.7, 0.3, c0)
    for n_threads in (2, 3, 4):
        threads(n_threads)
        assert all(np.array_equal(one, product()) for _ in range(20))


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("narrow", [64, 50, 128, 256])
def test_narrow_products_read_a_in_place_with_the_bits_of_packed_a(kernel_path, threads,
                                                                   trans_a, narrow):
    """A product of at most 256 columns per thread reads op(A) in place, a wide one (600
    columns, 300 a thread on two) packs it (gemm.c): the same sums in the same order, so
    the narrow product is bitwise the first columns of the wide one.  m = 301 leaves a short row panel; n = 50 a short
    column panel; k = 700 three depth blocks."""
    m, k = 301, 700
    rng = np.random.default_rng(15)
    a = random_matrix(rng, (k, m) if trans_a else (m, k))
    wide_b = random_matrix(rng, (k, 600))
    for n_threads in (1, 2):
        threads(n_threads)
        narrow_c = gemm.matmul_into(a, wide_b[:, :narrow].copy(),
                                    np.empty((m, narrow), np.float32), trans_a=trans_a)
        wide_c = gemm.matmul_into(a, wide_b, np.empty((m, 600), np.float32), trans_a=trans_a)
        assert np.array_equal(narrow_c, wide_c[:, :narrow])
    assert_close(narrow_c, a.T if trans_a else a, wide_b[:, :narrow])


@pytest.mark.parametrize("shape", [(512, 300, 700), (1100, 1100, 256)])
def test_row_split_threads_share_or_copy_b_blocks_without_races(kernel_path, threads, shape):
    """Threads splitting the rows of C each pack a private copy of a small B block
    (512 x 300, k blocks 234/233/233), or pack a large one together and share it
    (1100 x 1100 at k 256): either way every repeat gives the one-thread bits."""
    m, n, k = shape
    rng = np.random.default_rng(16)
    a, b = random_matrix(rng, (m, k)), random_matrix(rng, (k, n))
    one, mismatches = repeated_two_thread_mismatches(threads, lambda: gemm.matmul(a, b),
                                                     repeats=20)
    assert mismatches == 0
    assert_close(one, a, b)


def test_batched_one_and_two_threads_bitwise_identical(kernel_path, threads):
    rng = np.random.default_rng(9)
    a, b = random_matrix(rng, (16, 33, 45)), random_matrix(rng, (16, 45, 29))
    threads(1)
    one = gemm.matmul(a, b)
    threads(2)
    assert np.array_equal(one, gemm.matmul(a, b))


@pytest.mark.skipif(len(KERNEL_PATHS) < 2, reason="only the generic kernel runs on this CPU")
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, True), (False, True)])
@pytest.mark.parametrize("m", [301, 1, 2, 3, 5, 8])
def test_kernel_paths_agree(m, trans_a, trans_b):
    rng = np.random.default_rng(10)
    a, b = random_matrix(rng, (m, 259)), random_matrix(rng, (259, 333))
    a_op, b_op = (a.T.copy().T if trans_a else a), (b.T.copy().T if trans_b else b)
    original, results = pylayers.get_kernel_path(), []
    try:
        for path in KERNEL_PATHS:
            pylayers.set_kernel_path(path)
            results.append(gemm.matmul(a_op, b_op))
    finally:
        pylayers.set_kernel_path(original)
    bound = 2 * (259 + 4) * UNIT_ROUNDOFF * (np.abs(a) @ np.abs(b))
    for other in results[1:]:
        assert np.all(np.abs(other - results[0]) <= bound)



@pytest.mark.skipif("avx512" not in KERNEL_PATHS, reason="this CPU has no AVX-512")
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True),
                                              (True, True)])
@pytest.mark.parametrize("m, n, k", [(128, 512, 784), (301, 333, 259), (37, 70, 600),
                                     (20, 4200, 30), (9, 31, 40)])
@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (-0.5, 1.5)])
def test_avx512_gives_the_bits_of_avx2(threads, trans_a, trans_b, m, n, k, alpha, beta):
    """The 8 x 32 tile sums each element in the order of the 6 x 16 tile (one FMA chain
    over k per depth block): the same bits, full tiles and edges, packed and prepacked B,
    on one and two threads."""
    rng = np.random.default_rng(m + n + k)
    a = random_matrix(rng, (k, m) if trans_a else (m, k))
    b = random_matrix(rng, (n, k) if trans_b else (k, n))
    c_before = random_matrix(rng, (m, n))
    original, results = pylayers.get_kernel_path(), {}
    try:
        for path in ("avx2", "avx512"):
            pylayers.set_kernel_path(path)
            for n_threads in (1, 2):
                threads(n_threads)
                plain, prepacked = c_before.copy(), c_before.copy()
                gemm.sgemm(a, b, plain, trans_a, trans_b, alpha, beta)
                gemm.sgemm_packed_b(a, b, prepacked, trans_a, trans_b, alpha, beta)
                results[path, n_threads] = plain, prepacked
    finally:
        pylayers.set_kernel_path(original)
    reference = results["avx2", 1]
    for key, (plain, prepacked) in results.items():
        assert np.array_equal(plain, reference[0]), key
        assert np.array_equal(prepacked, reference[1]), key
    assert_close(reference[0], a.T if trans_a else a, b.T if trans_b else b, alpha, beta,
                 c_before)

@pytest.mark.parametrize("a, b, error", [
    (np.float32(1.0), np.ones((2, 2), np.float32), ValueError),
    (np.ones((3, 4), np.float32), np.ones((5, 6), np.float32), ValueError),
    (np.ones((2, 3, 4), np.float32), np.ones((5, 4, 6), np.float32), ValueError),
    (np.ones((3, 4), np.complex64), np.ones((4, 2), np.float32), TypeError),
    (np.ones((3, 4), object), np.ones((4, 2), np.float32), TypeError),
    (np.ones((3, 4), bool), np.ones((4, 2), np.float32), TypeError),
    (np.full((3, 4), "x"), np.ones((4, 2), np.float32), TypeError),
])
def test_bad_input_names_both_shapes(a, b, error):
    with pytest.raises(error) as info:
        gemm.matmul(a, b)
    assert str(np.shape(a)) in str(info.value) and str(np.shape(b)) in str(info.value)


def test_sgemm_rejects_bad_arguments():
    a, b = np.ones((3, 4), np.float32), np.ones((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 4\)"):
        gemm.sgemm(a, b.T.copy(), np.empty((3, 5), np.float32))
    with pytest.raises(ValueError, match="unit-stride"):
        gemm.sgemm(np.ones((3, 8), np.float32)[:, ::2], b, np.empty((3, 5), np.float32))
    with pytest.raises(TypeError):
        gemm.sgemm(a.astype(np.float64), b, np.empty((3, 5), np.float32))
    with pytest.raises(ValueError, match="out must have shape"):
        gemm.sgemm(a, b, np.empty((5, 3), np.float32))
    with pytest.raises(TypeError):
        gemm.matmul_into(a, b, np.empty((3, 5), np.float64))
    with pytest.raises(ValueError, match="share memory"):
        square = np.ones((4, 4), np.float32)
        gemm.matmul_into(square, square, square)


def test_concurrent_python_threads_get_their_own_pack_space(kernel_path):
    from concurrent.futures import ThreadPoolExecutor
    rng = np.random.default_rng(11)
    pairs = [(random_matrix(rng, (200 + 7 * i, 300)), random_matrix(rng, (300, 150 + 5 * i)))
             for i in range(6)]
    expected = [gemm.matmul(a, b) for a, b in pairs]
    with ThreadPoolExecutor(max_workers=3) as pool:
        for _ in range(3):
            results = list(pool.map(lambda pair: gemm.matmul(*pair), pairs))
            assert all(np.array_equal(r, e) for r, e in zip(results, expected))


def test_a_threads_first_product_that_packs_nothing_runs_the_kernel(kernel_path, threads):
    """B prepacked and A read in place: the call packs nothing, and a thread's first such
    call (a fresh thread owns no pack space yet) must still run the blocked kernel, not
    fall back to the reference loop, whose sums round differently."""
    import threading
    threads(1)
    rng = np.random.default_rng(17)
    a, b = random_matrix(rng, (75, 24)), random_matrix(rng, (24, 96))
    expected = gemm.sgemm_packed_b(a, b, np.zeros((75, 96), np.float32))
    results = []
    for _ in range(3):
        worker = threading.Thread(
            target=lambda: results.append(gemm.sgemm_packed_b(a, b, np.zeros((75, 96), np.float32))))
        worker.start()
        worker.join()
    assert all(np.array_equal(r, expected) for r in results)
    assert_close(expected, a, b)
