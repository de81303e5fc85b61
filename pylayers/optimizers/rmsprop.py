"""RMSprop, as keras/src/optimizers/rmsprop.py."""
from pylayers._kernels import optim as kernels
from pylayers.optimizers.base import Optimizer


class RMSprop(Optimizer):
    """v = rho*v + (1-rho)*g^2; centered: a = rho*a + (1-rho)*g and the denominator is
    v - a^2 + eps, else v + eps; inc = lr*g/sqrt(denominator); with momentum
    m = momentum*m + inc, w -= m; else w -= inc."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered

    def _slot_groups(self):
        groups = [("velocity",)]
        if self.momentum > 0:
            groups.append(("momentum",))
        if self.centered:
            groups.append(("average_gradient",))
        return groups

    def _update(self, index, w, g, learning_rate, prep):
        kernels.rmsprop_update(w, g, self._slot("velocity", index),
                               self._slot("momentum", index),
                               self._slot("average_gradient", index), learning_rate,
                               self.rho, self.momentum, self.epsilon, **prep)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}
