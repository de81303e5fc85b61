"""The GRADIENT_CASES registries of tests/ops and tests/layers: every public op and
layer declares one there (tests/layers/test_registry.py and tests/ops/test_ops.py
enforce it), so suites built on them cover new layer families without edits."""
import importlib.util
import pathlib

TESTS = pathlib.Path(__file__).parent.parent


def gradient_cases(package):
    """{case name: case} merged from tests/<package>/test_*.py."""
    cases = {}
    for path in sorted((TESTS / package).glob("test_*.py")):
        spec = importlib.util.spec_from_file_location(f"_cases_{package}_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cases.update(getattr(module, "GRADIENT_CASES", {}))
    return cases
