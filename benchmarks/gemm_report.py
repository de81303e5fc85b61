"""GFLOP/s of pylayers' matmul and numpy.matmul (OpenBLAS) side by side, as markdown.

    python benchmarks/gemm_report.py --threads 2
    python benchmarks/gemm_report.py --threads 1 --kernel generic --clock-ghz 3.6
    python benchmarks/gemm_report.py --threads 2 --measure-peak

Both libraries get the same thread count (PYLAYERS_NUM_THREADS, and OPENBLAS/OMP/MKL
thread variables for numpy, set before either is imported).  The two are timed
interleaved, call for call, so machine noise hits both alike; each figure is the
median over repeated samples."""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

# (group, label, (rows, inner, cols) of the product, how operands are laid out).
# Layout "nn": a (m, k) @ b (k, n); "nt": a @ w.T with w (n, k) (a dX = dY @ W^T backward);
# "tn": x.T @ b with x (k, m) (a dW = X^T @ dY backward).
SQUARE = [("square", f"{s}x{s} @ {s}x{s}", (s, s, s), "nn") for s in (64, 128, 256, 512, 1024, 2048)]
TRAINING_LAYERS = [(128, 784, 64), (128, 784, 512), (128, 512, 512), (32, 100, 256)]


def training_cases():
    """Forward X @ W and both backward products for each (batch, in, out) dense layer."""
    cases = []
    for batch, fan_in, fan_out in TRAINING_LAYERS:
        group = f"dense {batch}x{fan_in}->{fan_out}"
        cases.append((group, f"fwd  X@W     {batch}x{fan_in} @ {fan_in}x{fan_out}",
                      (batch, fan_in, fan_out), "nn"))
        cases.append((group, f"bwd  dY@W^T  {batch}x{fan_out} @ ({fan_in}x{fan_out})^T",
                      (batch, fan_out, fan_in), "nt"))
        cases.append((group, f"bwd  X^T@dY  ({batch}x{fan_in})^T @ {batch}x{fan_out}",
                      (fan_in, batch, fan_out), "tn"))
    return cases


# Inference at batch 1 (and 8): a few rows against a whole weight matrix, no packing.
INFERENCE = [("inference", f"{m}x{k} @ {k}x{n}", (m, k, n), "nn")
             for m, k, n in ((1, 784, 64), (1, 784, 512), (1, 512, 512), (1, 512, 10),
                             (8, 784, 512))]
CASES = SQUARE + training_cases() + INFERENCE


def operands(shape, layout, seed=0):
    """Float32 operands (a, b) of the product, as views with the requested layout."""
    import numpy as np
    m, k, n = shape
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if layout == "tn" else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if layout == "nt" else (k, n), dtype=np.float32)
    return (a.T if layout == "tn" else a), (b.T if layout == "nt" else b)


def gflops(shape, seconds):
    m, k, n = shape
    return 2.0 * m * k * n / seconds / 1e9


def calls_per_sample(function, min_sample_seconds, settle_seconds):
    """How many calls of function fill min_sample_seconds, counted over a fifth of that
    time after the machine has settled.  (Timing one call right after another library's
    had run counted its spinning threads: a product at two threads then got a handful
    of calls per sample, each dominated by waking a sleeping core.)"""
    time.sleep(settle_seconds)
    function()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_sample_seconds / 5:
        function()
        calls += 1
    return 5 * calls


def time_interleaved(functions, min_sample_seconds, samples, settle_seconds):
    """Median seconds per call of each function, sampled alternately.  Before each sample
    the machine idles settle_seconds, so that the other library's worker threads, which
    spin-wait for a while after a call (OpenBLAS for ~0.11 s here), have gone to sleep
    and do not steal a core from the library being timed."""
    calls = calls_per_sample(functions[0], min_sample_seconds, settle_seconds)
    per_call = [[] for _ in functions]
    for _ in range(samples):
        for f, record in zip(functions, per_call):
            time.sleep(settle_seconds)
            f()
            start = time.perf_counter()
            for _ in range(calls):
                f()
            record.append((time.perf_counter() - start) / calls)
    return [statistics.median(r) for r in per_call]


def measured_fma_peak(threads):
    """(clock GHz, FMA peak GFLOP/s) of `threads` cores measured together: fma_peak.c
    compiled with the C compiler and run once per core, concurrently.  The peak is the
    larger of the measured FMA rate and cores x clock x 32 flops per cycle."""
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fma_peak.c")
    with tempfile.TemporaryDirectory() as build_dir:
        binary = os.path.join(build_dir, "fma_peak")
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-o", binary, source], check=True)
        runs = [subprocess.Popen([binary], stdout=subprocess.PIPE, text=True)
                for _ in range(threads)]
        results = [tuple(map(float, run.communicate()[0].split())) for run in runs]
    clock_ghz = min(clock for clock, _ in results)
    fma_gflops = sum(gflops for _, gflops in results)
    return clock_ghz, max(fma_gflops, threads * clock_ghz * 32)


def set_thread_environment(threads):
    for var in ("PYLAYERS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kernel", default="auto", help="auto, generic or avx2")
    parser.add_argument("--samples", type=int, default=9)
    parser.add_argument("--sample-seconds", type=float, default=0.05)
    parser.add_argument("--settle-seconds", type=float, default=0.25,
                        help="idle time before each sample (0: back-to-back)")
    parser.add_argument("--clock-ghz", type=float, default=0.0,
                        help="core clock for a '%% of FMA peak' column (threads x clock x 32)")
    parser.add_argument("--measure-peak", action="store_true",
                        help="measure the clock and FMA peak of this machine (fma_peak.c)")
    parser.add_argument("--filter", default="", help="only labels containing this text")
    args = parser.parse_args(argv)
    set_thread_environment(args.threads)

    import numpy as np
    import pylayers
    from pylayers._kernels.gemm import matmul

    pylayers.set_num_threads(args.threads)
    pylayers.set_kernel_path(args.kernel)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"threads={args.threads} kernel={pylayers.get_kernel_path()} numpy={np.__version__} "
          f"load(1 min)={load:.2f}\n")
    peak = args.threads * args.clock_ghz * 32   # 2 FMA pipes x 8 floats x 2 flops per cycle
    if args.measure_peak:
        clock_ghz, peak = measured_fma_peak(args.threads)
        print(f"measured: clock {clock_ghz:.2f} GHz, FMA peak of {args.threads} core(s) "
              f"{peak:.1f} GFLOP/s\n")
    peak_header, peak_rule = (" pylayers % of peak |", "---:|") if peak else ("", "")
    print(f"| shape | pylayers GFLOP/s | numpy GFLOP/s | ratio |{peak_header}")
    print(f"|---|---:|---:|---:|{peak_rule}")
    for group, label, shape, layout in CASES:
        if args.filter not in label and args.filter not in group:
            continue
        a, b = operands(shape, layout)
        ours, theirs = time_interleaved([lambda: matmul(a, b), lambda: np.matmul(a, b)],
                                        args.sample_seconds, args.samples,
                                        args.settle_seconds)
        peak_cell = f" {100 * gflops(shape, ours) / peak:.0f}% |" if peak else ""
        print(f"| {label} | {gflops(shape, ours):.1f} | {gflops(shape, theirs):.1f} "
              f"| {theirs / ours:.2f} |{peak_cell}")
        sys.stdout.flush()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload(1 min) at end={load:.2f}")


if __name__ == "__main__":
    main()
