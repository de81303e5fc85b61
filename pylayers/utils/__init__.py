from pylayers.utils.rng import global_rng, set_random_seed
