"""The brief's examples run unchanged against the installed package.

examples/seed_models.py and further_topics.py are copies of the shared examples; the
blocks whose layers exist run here (conv, recurrent and functional blocks join as the
issues that build those layers land)."""
import pathlib
import re

import pytest

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"
NOT_YET = re.compile(r"Conv|LSTM|GRU|SimpleRNN|Embedding|Pooling|conv", re.IGNORECASE)


def seed_blocks():
    """Block number -> source, split at the '# N.' comments of seed_models.py."""
    source = (EXAMPLES / "seed_models.py").read_text()
    parts = re.split(r"^# (\d+)\. .*$", source, flags=re.MULTILINE)
    header, numbered = parts[0], parts[1:]
    return header, {int(n): body for n, body in zip(numbered[::2], numbered[1::2])}


def paragraphs_without(body, pattern):
    """The block's paragraphs (split at blank lines) that use no layer still to come."""
    return "\n\n".join(p for p in body.split("\n\n") if not pattern.search(p))


@pytest.mark.parametrize("block", [1, 4, 7, 8, 9, 10])
def test_dense_blocks_of_seed_models_run_unchanged(block, capsys):
    header, blocks = seed_blocks()
    namespace = {}
    exec(compile(header, "seed_models.py", "exec"), namespace)
    exec(compile(paragraphs_without(blocks[block], NOT_YET), f"seed_models.py#{block}", "exec"),
         namespace)
    assert "Model:" in capsys.readouterr().out or block == 9


def test_examples_are_the_shared_copies():
    shared = pathlib.Path(__file__).parent.parent.parent / "shared" / "examples"
    if not shared.exists():
        pytest.skip("shared/ is not beside this checkout")
    for name in ("seed_models.py", "further_topics.py"):
        assert (EXAMPLES / name).read_text() == (shared / name).read_text()
