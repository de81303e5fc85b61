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
    env = dict(os.environ, PYLAYERS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [sys.executable, "-m", "pytest", *files, "--benchmark-only", "-q",
               f"--benchmark-json={json_path}", "-p", "no:cacheprovider", *extra]
    subprocess.run(command, env=env, check=False)
    with open(json_path) as f:
        return json.load(f)


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
