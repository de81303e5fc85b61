"""Every public layer has a finite-difference gradient check: each tests/layers/test_*.py
file declares GRADIENT_CASES = {"ClassName_variant": (factory, input, training)}, and a
layer exported by pylayers.layers without a case fails here."""
import importlib.util
import inspect
import pathlib

from pylayers import layers

NOT_GRADIENT_CHECKED = {"Layer", "Input", "InputLayer", "KerasTensor"}


def declared_cases():
    names = set()
    for path in sorted(pathlib.Path(__file__).parent.glob("test_*.py")):
        if path.name == pathlib.Path(__file__).name:
            continue
        spec = importlib.util.spec_from_file_location(f"_registry_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        names |= set(getattr(module, "GRADIENT_CASES", {}))
    return names


def test_every_public_layer_has_a_gradient_check():
    public = {name for name, obj in vars(layers).items()
              if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))}
    checked = {name.split("_")[0] for name in declared_cases()}
    assert public - NOT_GRADIENT_CHECKED - checked == set()
