"""keras.models: Sequential and Model."""
from pylayers.models.model import Model
from pylayers.models.sequential import Sequential
