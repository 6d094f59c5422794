"""Actor-critic MLP for vector observations (PureJaxRL's architecture and init)."""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.initializers import constant, orthogonal

from roboscape_jax.policies.distributions import Categorical, DiagGaussian, Distribution

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}


class MLP(nn.Module):
    """Dense stack with orthogonal(sqrt 2) init, then a linear head of width ``out``."""

    hidden: Sequence[int]
    out: int
    activation: str = "tanh"
    head_scale: float = 1.0  # orthogonal gain of the last layer

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = nn.Dense(width, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(x)
            x = act(x)
        head = nn.Dense(self.out, kernel_init=orthogonal(self.head_scale), bias_init=constant(0.0))
        return head(x)


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs; returns (action distribution, value).

    obs [..., D] -> (Categorical logits [..., A] or DiagGaussian [..., A], value [...]).
    Continuous heads use a state-independent log std parameter, as in PureJaxRL.
    """

    action_dim: int
    discrete: bool = True
    hidden: Sequence[int] = (64, 64)
    activation: str = "tanh"
    log_std_init: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[Distribution, jax.Array]:
        actor_out = MLP(self.hidden, self.action_dim, self.activation, 0.01, name="actor")(obs)
        value = MLP(self.hidden, 1, self.activation, 1.0, name="critic")(obs)[..., 0]
        if self.discrete:
            return Categorical(actor_out), value
        log_std = self.param("log_std", constant(self.log_std_init), (self.action_dim,))
        return DiagGaussian(actor_out, jnp.broadcast_to(log_std, actor_out.shape)), value
