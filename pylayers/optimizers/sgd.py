"""SGD with optional (Nesterov) momentum, as keras/src/optimizers/sgd.py."""
from pylayers._kernels import optim as kernels
from pylayers.optimizers.base import Optimizer, _is_number


class SGD(Optimizer):
    """m = momentum*m - lr*g; w += m (nesterov: w += momentum*m - lr*g); without
    momentum w -= lr*g."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        if not _is_number(momentum) or not 0 <= momentum <= 1:
            raise ValueError("SGD: `momentum` must be a float between [0, 1]. "
                             f"Received: momentum={momentum!r}")
        self.momentum = momentum
        self.nesterov = nesterov

    def _slot_groups(self):
        return [("momentum",)] if self.momentum != 0 else []

    def _update(self, index, w, g, learning_rate, prep):
        kernels.sgd_update(w, g, self._slot("momentum", index), learning_rate, self.momentum,
                           self.nesterov, **prep)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}
