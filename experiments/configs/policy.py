"""The image policy section (issue 7): `policy_config(variant)`, fields of
`roboscape_jax.policies.image.ImageActorCritic`.

SFT and PPO share it: PPO can start from an SFT checkpoint only when both use the same section.
  debug  2 convs of 4 channels, a 16-wide trunk: compiles and runs in seconds.
  tiny   4 strided convs (16, 32, 32, 32) over the 128x64 frame -> 8x4x32 features -> 256, then a
         2 x 256 trunk: about 0.5M parameters, a few ms per CPU step at batch 64.
  base   wider convs and trunk, for a GPU.
"""

from __future__ import annotations

import ml_collections

VARIANTS = ("debug", "tiny", "base")


def policy_config(variant: str = "tiny") -> ml_collections.ConfigDict:
    """The policy section for `variant` (one of VARIANTS)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown policy variant {variant!r}; known: {VARIANTS}")
    c = ml_collections.ConfigDict(dict(
        action_dim=7, conv_features=(16, 32, 32, 32), conv_out=256, hidden=(256, 256),
        activation="relu", log_std_init=-0.5, log_std_min=-5.0))
    if variant == "debug":
        c.update(conv_features=(4, 4), conv_out=16, hidden=(16,))
    elif variant == "base":
        c.update(conv_features=(32, 64, 64, 128), conv_out=512, hidden=(512, 512))
    return c
