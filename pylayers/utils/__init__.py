"""keras.utils: seeding, the progress bar, file download."""
from pylayers.datasets._download import get_file
from pylayers.utils.progbar import Progbar
from pylayers.utils.rng import global_rng, set_random_seed
from pylayers.saving.object_registration import (get_registered_name, get_registered_object,
                                                  register_keras_serializable)
