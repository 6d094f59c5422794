"""The policy section (issue 7): `policy_config(variant)`, the fields of both policy families.

`family` picks the network (`roboscape_jax.policies.families.create_policy`); each reads its own
fields (and action_dim, log_std_init, log_std_min):
  "cnn"          `policies.image.ImageActorCritic`: conv_features, conv_out, hidden, activation
  "transformer"  `policies.transformer.TransformerActorCritic` (VLA-style): patch_size, width,
                 num_layers, num_heads, mlp_ratio
e.g. `--config.sft.model.family=transformer` on the pipeline (SFT and both PPO stages read
`config.sft.model`). SFT and PPO share the section: PPO can start from an SFT checkpoint only when
both use the same one.
  debug  CNN: 2 convs of 4 channels, a 16-wide trunk; transformer: 16x16 patches (32 tokens),
         1 layer of width 16: each compiles and runs in seconds.
  tiny   CNN: 4 strided convs (16, 32, 32, 32) over the 128x64 frame -> 8x4x32 features -> 256,
         then a 2 x 256 trunk: about 0.5M parameters, a few ms per CPU step at batch 64.
         Transformer: 8x8 patches (128 image tokens), 2 layers of width 64, 4 heads: 146k
         parameters.
  base   wider convs and trunk, a 6-layer transformer of width 256, for a GPU.
"""

from __future__ import annotations

import ml_collections

VARIANTS = ("debug", "tiny", "base")


def policy_config(variant: str = "tiny") -> ml_collections.ConfigDict:
    """The policy section for `variant` (one of VARIANTS)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown policy variant {variant!r}; known: {VARIANTS}")
    c = ml_collections.ConfigDict(dict(
        family="cnn", action_dim=7, log_std_init=-0.5, log_std_min=-5.0,
        conv_features=(16, 32, 32, 32), conv_out=256, hidden=(256, 256), activation="relu",
        patch_size=8, width=64, num_layers=2, num_heads=4, mlp_ratio=4))
    if variant == "debug":
        c.update(conv_features=(4, 4), conv_out=16, hidden=(16,))
        c.update(patch_size=16, width=16, num_layers=1, num_heads=2, mlp_ratio=2)
    elif variant == "base":
        c.update(conv_features=(32, 64, 64, 128), conv_out=512, hidden=(512, 512))
        c.update(width=256, num_layers=6, num_heads=8)
    return c
