"""Policy families: the `family` field of a policy config section picks the network class.

  policy = create_policy(config.sft.model)   # "cnn" (the default) or "transformer"

A section (`experiments.configs.policy.policy_config`) holds the fields of every family; each class
reads its own. `policy_section` is what identifies a trained policy: the family and the fields its
class reads, so a CNN checkpoint does not depend on the transformer's sizes (nor the reverse).
Sections written before `family` existed hold the CNN (`FIELDS_ADDED_LATER`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn

from roboscape_jax.policies.image import ImageActorCritic
from roboscape_jax.policies.transformer import TransformerActorCritic

POLICIES: dict[str, type[nn.Module]] = {"cnn": ImageActorCritic,
                                        "transformer": TransformerActorCritic}
# Policy-section fields added after checkpoints existed, with the value those checkpoints had.
FIELDS_ADDED_LATER = {"family": "cnn"}


def _fields(cls: type[nn.Module]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}


def _as_dict(section) -> dict[str, Any]:
    return section.to_dict() if hasattr(section, "to_dict") else dict(section)


def policy_section(section) -> dict[str, Any]:
    """{family, the fields of `section` that the family's class reads}; a section without
    `family` is a CNN's. Raises ValueError naming an unknown family."""
    values = _as_dict(section)
    family = values.get("family", FIELDS_ADDED_LATER["family"])
    if family not in POLICIES:
        raise ValueError(f"unknown policy family {family!r}; known: {sorted(POLICIES)}")
    used = _fields(POLICIES[family])
    return {"family": family, **{k: v for k, v in values.items() if k in used}}


def check_family(stored, model_config, where: str) -> None:
    """Raises ValueError when a stored policy section (a checkpoint's, saved in `where`) is of
    another family than `model_config`."""
    was, new = policy_section(stored)["family"], policy_section(model_config)["family"]
    if was != new:
        raise ValueError(f"model.family is {new!r} in the config but {was!r} in {where}")


def create_policy(section) -> nn.Module:
    """The policy network of a policy config section (`family` picks the class). Raises ValueError
    naming an unknown family or a field no family reads."""
    values = _as_dict(section)
    unknown = sorted(set(values) - {"family"} - set().union(*map(_fields, POLICIES.values())))
    if unknown:
        raise ValueError(f"policy section has fields {unknown} that no family "
                         f"({sorted(POLICIES)}) reads")
    kwargs = policy_section(values)
    cls = POLICIES[kwargs.pop("family")]
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})
