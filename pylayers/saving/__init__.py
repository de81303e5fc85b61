"""keras.saving: the .keras format and weights files."""
from pylayers.saving.saving_lib import load_model, load_weights, save_model, save_weights
