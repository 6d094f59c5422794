"""Policies: action distributions and actor-critic networks."""

from roboscape_jax.policies.distributions import Categorical, DiagGaussian, Distribution
from roboscape_jax.policies.mlp import ACTIVATIONS, MLP, ActorCritic

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "ActorCritic",
    "Categorical",
    "DiagGaussian",
    "Distribution",
]
