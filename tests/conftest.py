"""Fixtures shared across the test directories."""
import pytest

import pylayers


@pytest.fixture
def restore_threads():
    """The thread count as it was before the test, whatever the test sets."""
    saved = pylayers.get_num_threads()
    yield
    pylayers.set_num_threads(saved)
