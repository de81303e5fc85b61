"""Run benchmark files with pytest-benchmark and print one markdown table: per group, the
median of pylayers and of each peer (PyTorch, numpy, Keras), throughput where the test
records `extra_info["samples"]`, and the speed-up peer_time / pylayers_time (> 1 means
pylayers is faster). Writes the raw JSON too.

    python benchmarks/compare.py benchmarks/bench_mlp.py --threads 2 --json bench.json
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile

PEERS = ("torch", "numpy", "keras")


def implementation(test_name):
    for name in ("pylayers",) + PEERS:
        if name in test_name:
            return name
    return "pylayers"


def run(files, threads, json_path, extra):
    """Each library's tests in a process of its own, one after the other: an OpenMP or
    BLAS thread pool left spinning by one library otherwise takes the cores of the next
    (pylayers, numpy's OpenBLAS and PyTorch each bring their own), which on a 2-core
    machine can halve whichever runs second."""
    env = dict(os.environ, PYLAYERS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    extra, user_filter = _split_filter(extra)
    report = None
    for name in ("pylayers",) + PEERS:
        selection = name if name != "pylayers" else " and ".join(f"not {p}" for p in PEERS)
        if user_filter:
            selection = f"({user_filter}) and ({selection})"
        part_path = f"{json_path}.{name}"
        command = [sys.executable, "-m", "pytest", *files, "--benchmark-only", "-q",
                   f"--benchmark-json={part_path}", "-p", "no:cacheprovider", "-k",
                   selection, *extra]
        subprocess.run(command, env=env, check=False)
        if not os.path.exists(part_path):
            continue
        with open(part_path) as f:
            part = json.load(f)
        os.remove(part_path)
        if report is None:
            report = part
        else:
            report["benchmarks"] += part["benchmarks"]
    if report is None:
        raise SystemExit("compare.py: no benchmark ran")
    with open(json_path, "w") as f:
        json.dump(report, f)
    return report


def _split_filter(extra):
    """(the other arguments, the expression of a -k among them or None)."""
    rest, expression = [], None
    args = iter(extra)
    for arg in args:
        if arg == "-k":
            expression = next(args)
        elif arg.startswith("-k"):
            expression = arg[2:]
        else:
            rest.append(arg)
    return rest, expression


def table(report):
    groups = collections.OrderedDict()
    for bench in report["benchmarks"]:
        groups.setdefault(bench["group"], {})[implementation(bench["name"])] = bench
    lines = ["| group | pylayers median | peer | peer median | speed-up | pylayers samples/s |",
             "|---|---:|---|---:|---:|---:|"]
    for group, by_impl in groups.items():
        ours = by_impl.get("pylayers")
        for peer in PEERS:
            if peer in by_impl and ours is not None:
                mine, theirs = ours["stats"]["median"], by_impl[peer]["stats"]["median"]
                samples = ours.get("extra_info", {}).get("samples")
                rate = f"{samples / mine:,.0f}" if samples else ""
                lines.append(f"| {group} | {_time(mine)} | {peer} | {_time(theirs)} | "
                             f"{theirs / mine:.2f}x | {rate} |")
        if ours is not None and "ratio" in ours.get("extra_info", {}):
            lines.append(f"| {group} | {_time(ours['stats']['median'])} | (interleaved) | | "
                         f"ratio {ours['extra_info']['ratio']:.3f} | |")
    return "\n".join(lines)


def _time(seconds):
    return f"{seconds * 1e3:.3f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f} us"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", default=None)
    args, extra = parser.parse_known_args()
    json_path = args.json or tempfile.mktemp(suffix=".json")
    report = run(args.files, args.threads, json_path, extra)
    machine = report.get("machine_info", {})
    print(f"\n{machine.get('cpu', {}).get('brand_raw', 'cpu?')}, {args.threads} thread(s), "
          f"python {machine.get('python_version', '?')}\n")
    print(table(report))


if __name__ == "__main__":
    main()
