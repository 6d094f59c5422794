"""Policies: action distributions and actor-critic networks (MLP over vectors, CNN over the
two-view frame + instruction + gripper). Behaviour cloning lives in `policies.sft` (imported on
demand: it pulls in the env and tokenizer)."""

from roboscape_jax.policies.distributions import Categorical, DiagGaussian, Distribution
from roboscape_jax.policies.image import ImageActorCritic
from roboscape_jax.policies.mlp import ACTIVATIONS, MLP, ActorCritic

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "ActorCritic",
    "Categorical",
    "DiagGaussian",
    "Distribution",
    "ImageActorCritic",
]
