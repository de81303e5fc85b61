"""Run benchmark files with pytest-benchmark and print one markdown table: per group, the
median of pylayers and of each peer (PyTorch, numpy, Keras), throughput where the test
records `extra_info["samples"]`, and the speed-up peer_time / pylayers_time (> 1 means
pylayers is faster). Writes the raw JSON too.

    python benchmarks/compare.py benchmarks/bench_mlp.py --threads 2 --json bench.json
    python benchmarks/compare.py benchmarks/bench_models.py --threads 2 --repeat 3

--repeat N runs the libraries' processes in turn N times (pylayers, torch, ..., pylayers,
torch, ...): a machine whose speed drifts over minutes then slows both alike.  The table
gives the median over the repeats and the range of the per-repeat speed-ups (and of
the in-process ratios a test records in extra_info["ratio"]).
"""
import argparse
import collections
import json
import statistics
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


def run(files, threads, json_path, extra, repeat=1):
    """Each library's tests in a process of its own, one after the other, `repeat` times
    over: an OpenMP or BLAS thread pool left spinning by one library otherwise takes the
    cores of the next (pylayers, numpy's OpenBLAS and PyTorch each bring their own), which
    on a 2-core machine can halve whichever runs second.  Each benchmark entry of the
    report records its repeat."""
    env = dict(os.environ, PYLAYERS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    extra, user_filter = _split_filter(extra)
    report = None
    for round_index in range(repeat):
        for name in ("pylayers",) + PEERS:
            part = _run_library(files, name, user_filter, extra, env, f"{json_path}.{name}")
            if part is None:
                continue
            for bench in part["benchmarks"]:
                bench["repeat"] = round_index
            if report is None:
                report = part
            else:
                report["benchmarks"] += part["benchmarks"]
    if report is None:
        raise SystemExit("compare.py: no benchmark ran")
    with open(json_path, "w") as f:
        json.dump(report, f)
    return report


def _run_library(files, name, user_filter, extra, env, part_path):
    """One library's tests (all but the peers' for pylayers) in a fresh pytest process:
    its pytest-benchmark report, or None when none ran."""
    selection = name if name != "pylayers" else " and ".join(f"not {p}" for p in PEERS)
    if user_filter:
        selection = f"({user_filter}) and ({selection})"
    command = [sys.executable, "-m", "pytest", *files, "--benchmark-only", "-q",
               f"--benchmark-json={part_path}", "-p", "no:cacheprovider", "-k",
               selection, *extra]
    subprocess.run(command, env=env, check=False)
    if not os.path.exists(part_path):
        return None
    with open(part_path) as f:
        part = json.load(f)
    os.remove(part_path)
    return part


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
    """Per group and peer: medians over the repeats, the speed-up of those medians, and
    the range of the speed-ups of the repeats one by one."""
    medians = collections.OrderedDict()   # group -> implementation -> {repeat: median}
    extra_info, in_process_ratios = {}, collections.defaultdict(list)
    for bench in report["benchmarks"]:
        impl = implementation(bench["name"])
        by_repeat = medians.setdefault(bench["group"], {}).setdefault(impl, {})
        by_repeat[bench.get("repeat", 0)] = bench["stats"]["median"]
        extra_info[bench["group"], impl] = bench.get("extra_info", {})
        if "ratio" in bench.get("extra_info", {}):
            in_process_ratios[bench["group"]].append(bench["extra_info"]["ratio"])
    lines = ["| group | pylayers median | peer | peer median | speed-up | range | "
             "pylayers samples/s |", "|---|---:|---|---:|---:|---:|---:|"]
    for group, by_impl in medians.items():
        ours = by_impl.get("pylayers")
        info = extra_info.get((group, "pylayers"), {})
        for peer in PEERS:
            if peer not in by_impl or ours is None:
                continue
            theirs = by_impl[peer]
            mine, their_median = statistics.median(ours.values()), statistics.median(theirs.values())
            ratios = [theirs[r] / ours[r] for r in ours if r in theirs]
            samples = info.get("samples")
            rate = f"{samples / mine:,.0f}" if samples else ""
            lines.append(f"| {group} | {_time(mine)} | {peer} | {_time(their_median)} | "
                         f"{their_median / mine:.2f}x | {min(ratios):.2f}-{max(ratios):.2f} | "
                         f"{rate} |")
        ratios = in_process_ratios.get(group)
        if ours is not None and ratios:
            lines.append(f"| {group} | {_time(statistics.median(ours.values()))} | "
                         f"(interleaved) | | ratio {statistics.median(ratios):.3f} | "
                         f"{min(ratios):.2f}-{max(ratios):.2f} | |")
    return "\n".join(lines)


def _time(seconds):
    return f"{seconds * 1e3:.3f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f} us"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", default=None)
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the libraries in turn this many times (median, range)")
    args, extra = parser.parse_known_args()
    json_path = args.json or tempfile.mktemp(suffix=".json")
    report = run(args.files, args.threads, json_path, extra, args.repeat)
    machine = report.get("machine_info", {})
    print(f"\n{machine.get('cpu', {}).get('brand_raw', 'cpu?')}, {args.threads} thread(s), "
          f"python {machine.get('python_version', '?')}\n")
    print(table(report))


if __name__ == "__main__":
    main()
