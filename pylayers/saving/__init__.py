"""keras.saving: the .keras format, weights files, legacy .h5 files, custom objects."""
from pylayers.saving.object_registration import (get_registered_name, get_registered_object,
                                                 register_keras_serializable)
from pylayers.saving.saving_lib import load_model, load_weights, save_model, save_weights
