"""Policies: action distributions and actor-critic networks (MLP over vectors; over the two-view
frame + instruction + gripper a CNN or a VLA-style transformer, picked by `families.create_policy`).
Behaviour cloning lives in `policies.sft` (imported on demand: it pulls in the env and
tokenizer)."""

from roboscape_jax.policies.distributions import Categorical, DiagGaussian, Distribution
from roboscape_jax.policies.image import ImageActorCritic
from roboscape_jax.policies.mlp import ACTIVATIONS, MLP, ActorCritic
from roboscape_jax.policies.transformer import TransformerActorCritic

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "ActorCritic",
    "Categorical",
    "DiagGaussian",
    "Distribution",
    "ImageActorCritic",
    "TransformerActorCritic",
]
