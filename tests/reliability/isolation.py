"""Run code that may crash in a child process, so a segfault or abort becomes a test
failure naming the input instead of killing pytest."""
import json
import pathlib
import signal
import subprocess
import sys

HERE = pathlib.Path(__file__).parent


def run_cases(script, cases, timeout=300):
    """Feed `cases` (a JSON list) to HERE/script on stdin; return one result dict per
    case. A child killed by a signal, timed out, or exiting early fails with the case
    it was running."""
    try:
        done = subprocess.run([sys.executable, str(HERE / script)], input=json.dumps(cases),
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        finished = (error.stdout or b"").decode().count("\n")
        raise AssertionError(f"{script} hung on case {cases[finished]}") from None
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode < 0 or len(results) < len(cases):
        how = (f"died by signal {signal.Signals(-done.returncode).name}"
               if done.returncode < 0 else f"exited with {done.returncode}")
        raise AssertionError(f"{script} {how} on case {cases[len(results)]}\n"
                             f"{done.stderr[-3000:]}")
    return results
