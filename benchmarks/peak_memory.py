"""Peak memory of the first training epoch of the seed CNN (bench_conv's model) on
60,000 28x28 images at batch 128, pylayers beside PyTorch (CPU), each library in a
process of its own: the peak resident set during the epoch (VmHWM, reset just before
it) less the resident set before it, with the data and the built model already in
memory (so buffers, gradients and optimizer state count). Prints a markdown table.

    python benchmarks/peak_memory.py [--threads N]
"""
import argparse
import os
import subprocess
import sys

IMAGES = 60_000


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _epoch_peak_mib(run_epoch):
    """MiB the peak resident set rose above the resident set at the start of run_epoch()."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")   # reset VmHWM to the current resident set
    before = _status_kib("VmRSS")
    run_epoch()
    return (_status_kib("VmHWM") - before) / 1024


def measure(library):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_conv as bench
    x, y = bench.mnist_like(IMAGES)
    if library == "pylayers":
        model = bench.pylayers_cnn()
        return _epoch_peak_mib(lambda: model.fit(x, y, batch_size=bench.BATCH, verbose=0))
    torch = bench.torch
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    ty = torch.from_numpy(y)
    del x, y
    model, optimizer, loss_fn = bench.torch_cnn()
    return _epoch_peak_mib(lambda: bench.torch_epoch(model, optimizer, loss_fn, tx, ty))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--library", help=argparse.SUPPRESS)   # the child process's job
    args = parser.parse_args()
    if args.library:
        print(measure(args.library))
        return
    env = dict(os.environ, PYLAYERS_NUM_THREADS=str(args.threads),
               OMP_NUM_THREADS=str(args.threads))
    peaks = {}
    for library in ("pylayers", "torch"):
        out = subprocess.run([sys.executable, __file__, "--library", library], env=env,
                             check=True, capture_output=True, text=True).stdout
        peaks[library] = float(out.split()[-1])
    print(f"| one CNN training epoch, {args.threads} thread(s) | peak RSS above start |")
    print("|---|---:|")
    for library, mib in peaks.items():
        print(f"| {library} | {mib:.1f} MiB |")
    print(f"| pylayers / torch | {peaks['pylayers'] / max(peaks['torch'], 1e-9):.2f} |")


if __name__ == "__main__":
    main()
