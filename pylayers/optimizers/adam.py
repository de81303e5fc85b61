"""Adam and AdamW, as keras/src/optimizers/adam.py and adamw.py."""
import math

import numpy as np

from pylayers._kernels import optim as kernels
from pylayers.optimizers.base import Optimizer


class Adam(Optimizer):
    """m += (g - m)(1 - beta_1); v += (g^2 - v)(1 - beta_2); amsgrad: v_hat = max(v_hat, v);
    w -= alpha * m / (sqrt(v) + epsilon) with the "epsilon hat" step size
    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t), t = iterations + 1."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.amsgrad = amsgrad
        self._kept_step = None   # (the updates list, its optim.AdamStep)

    def _slot_groups(self):
        groups = [("momentum", "velocity")]
        return groups + [("velocity_hat",)] if self.amsgrad else groups

    def _step_size(self, learning_rate):
        """alpha, with the betas' powers taken of their float32 values as Keras does."""
        t = self._iterations + 1
        beta_1, beta_2 = float(np.float32(self.beta_1)), float(np.float32(self.beta_2))
        return learning_rate * math.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)

    def _update_all(self, updates, learning_rate, alongside):
        """One C call for all variables: its threads share them all, this one running
        alongside() first. Its arguments are converted once per `updates` list: the base
        class hands the same list out again while a step's arrays are those of the step
        before."""
        kept = self._kept_step
        if kept is None or kept[0] is not updates:
            step = kernels.AdamStep(
                [(w, g, self._slot("momentum", index), self._slot("velocity", index),
                  self._slot("velocity_hat", index), prep["grad_scale"], prep["clip_value"],
                  prep["decay"]) for index, w, g, prep in updates])
            kept = self._kept_step = (updates, step)
        kept[1].run(self._step_size(learning_rate), self.beta_1, self.beta_2, self.epsilon,
                    alongside)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay w -= w * weight_decay * lr before each step."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, **kwargs):
        if weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: "
                             "weight_decay=None")
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, amsgrad=amsgrad, weight_decay=weight_decay, **kwargs)
