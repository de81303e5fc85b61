"""The brief's examples run unchanged against the installed package, and print the
summaries real Keras 3 prints for them (tests/fixtures/summaries, recorded by running
the same file under Keras with stdout piped)."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
SUMMARIES = ROOT / "tests" / "fixtures" / "summaries"
SEED_SUMMARIES = ["seed1_mlp", "seed2_cnn", "seed3_stacked_lstm", "seed4_input_layer_mlp",
                  "seed5_variable_length_lstm", "seed6_embedding", "seed7_activation_layers",
                  "seed8_custom_layer", "seed10_mlp", "seed10_cnn", "seed10_lstm"]


def run_example(name, tmp_path):
    """Run an example file as a user would, stdout piped, from a scratch directory."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    result = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_seed_models_run_unchanged_and_print_keras_summaries(tmp_path):
    out = run_example("seed_models.py", tmp_path)
    assert out.rstrip().endswith("all seed models built")
    printed = re.findall(r'Model: ".*?\n Non-trainable params: [^\n]*\n', out, flags=re.S)
    assert len(printed) == len(SEED_SUMMARIES)
    for name, text in zip(SEED_SUMMARIES, printed):
        assert text == (SUMMARIES / f"{name}.piped.txt").read_text(), name


def test_further_topics_run_unchanged(tmp_path):
    out = run_example("further_topics.py", tmp_path)
    assert out.rstrip().endswith("all further topics ran")


def test_examples_are_the_shared_copies():
    shared = ROOT.parent / "shared" / "examples"
    if not shared.exists():
        pytest.skip("shared/ is not beside this checkout")
    for name in ("seed_models.py", "further_topics.py"):
        assert (EXAMPLES / name).read_text() == (shared / name).read_text()
