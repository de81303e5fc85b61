#!/usr/bin/env bash
# Build the C kernels with AddressSanitizer + UndefinedBehaviorSanitizer
# (PYLAYERS_SANITIZE=1, see setup.py) into a fresh venv, from a copy of the tree so the
# in-place build is untouched, and run the kernel-level tests against that build.
# The first out-of-bounds access, use-after-free or undefined behaviour aborts with a
# report; the fuzzing child processes report the case they were running.
#   scripts/sanitize.sh            # the kernel tests (a few minutes)
#   scripts/sanitize.sh tests/x.py # other tests
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

libasan=$(gcc -print-file-name=libasan.so)
if [ ! -e "$libasan" ]; then
    echo "sanitize.sh: gcc has no libasan.so ($libasan); install gcc's sanitizer runtime" >&2
    exit 2
fi

echo "== sanitizer build (ASan + UBSan, -O1) in a fresh venv"
mkdir "$work/src"
# the working tree as it is (tracked and new files), without build products
git ls-files -z --cached --others --exclude-standard | tar -c --null -T - | tar -x -C "$work/src"
python3 -m venv "$work/venv"
PYLAYERS_SANITIZE=1 "$work/venv/bin/pip" install -q "$work/src[test]"
rm -rf "$work/src/pylayers"   # tests import the sanitized install, not the sources

tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
    tests=(tests/test_gemm.py tests/reliability/test_fuzz_kernels.py tests/layers/test_conv.py
           tests/layers/test_pooling.py tests/layers/test_normalization.py
           tests/layers/test_recurrent.py tests/layers/test_embedding.py
           tests/layers/test_core_layers.py tests/test_optimizers.py
           tests/models/test_inference_plan.py)
fi

echo "== kernel tests under the sanitizers: ${tests[*]}"
cd "$work/src"
LD_PRELOAD="$libasan" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$work/venv/bin/python" -m pytest -q -p no:cacheprovider -p no:warnings --durations=15 "${tests[@]}"
echo "sanitizers: no findings"
