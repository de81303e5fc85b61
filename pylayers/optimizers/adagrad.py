"""Adagrad, as keras/src/optimizers/adagrad.py."""
from pylayers._kernels import optim as kernels
from pylayers.optimizers.base import Optimizer


class Adagrad(Optimizer):
    """acc += g^2 (acc starts at initial_accumulator_value); w -= lr*g/sqrt(acc + eps)."""

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def _slot_groups(self):
        return [("accumulator",)]

    def _slot_initial_value(self, slot_name):
        return self.initial_accumulator_value

    def _update(self, index, w, g, learning_rate, prep):
        kernels.adagrad_update(w, g, self._slot("accumulator", index),
                               learning_rate, self.epsilon, **prep)

    def get_config(self):
        return {**super().get_config(),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}
