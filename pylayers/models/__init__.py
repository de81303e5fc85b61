"""keras.models: Sequential and Model."""
from pylayers.models.model import Model
from pylayers.models.sequential import Sequential
from pylayers.saving.saving_lib import load_model


def model_from_json(json_string, custom_objects=None):
    import json
    from pylayers.saving.serialization import deserialize_layer
    return deserialize_layer(json.loads(json_string), custom_objects)
