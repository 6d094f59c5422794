"""Several independently trained world models decoded as one: each MaskGIT pass takes the mean of
the members' per-factor log-probabilities (a product of experts) and of their done probabilities.

  model, params = ensemble_of([(model_0, params_0), (model_1, params_1)])
  goal = sampling.golden_trajectory(params, model, ...)   # wherever a WorldModel goes

Why: the `tiny` text model's out-of-domain goals swing with its training seed (closer to the real
final frame than the initial frame in 69% of 48 `ood` episodes with seed 0, 46% with seed 1);
the two decoded together: 87.5%, with a lower goal-to-final LPIPS than either (README). Members
share one architecture; their params are stacked on a leading axis and `apply` vmaps over it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from roboscape_jax.types import PyTree
from roboscape_jax.world_model.model import WorldModel, WorldModelConfig, WorldModelOutput


@dataclasses.dataclass(frozen=True)
class EnsembleModel:
    """`WorldModel`'s `config` and `apply` over params stacked [M, ...] (M members)."""

    member: WorldModel
    size: int

    @property
    def config(self) -> WorldModelConfig:
        return self.member.config

    def apply(self, params: PyTree, *args: Any, memory: tuple[jax.Array, ...] | None = None,
              context_only: bool = False, **kwargs: Any):
        """`context_only`: the members' memories stacked [M, ...] (what a later call with
        `memory=` reads); otherwise one `WorldModelOutput` whose logits are the members' mean
        log-probabilities and whose done is their mean probability."""
        def one(p, m):
            extra = {"memory": m} if m is not None else {}
            return self.member.apply(p, *args, context_only=context_only, **extra, **kwargs)

        out = jax.vmap(one)(params, memory)
        if context_only:
            return out
        done = out.done.mean(0)
        return WorldModelOutput(jax.nn.log_softmax(out.logits, axis=-1).mean(0), done,
                                jnp.log(done) - jnp.log1p(-done))


def ensemble_of(members: Sequence[tuple[WorldModel, PyTree]]) -> tuple[Any, PyTree]:
    """(model, params) of one member as it is, or (EnsembleModel, stacked params) of several;
    raises ValueError when their configs differ."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    if len(members) == 1:
        return members[0]
    model = members[0][0]
    for other, _ in members[1:]:
        if other.config != model.config:
            raise ValueError(f"ensemble members must share one config; {other.config} differs "
                             f"from {model.config}")
    params = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[p for _, p in members])
    return EnsembleModel(model, len(members)), params


def restore_ensemble(workdirs: Sequence[str], config) -> tuple[Any, PyTree]:
    """`ensemble_of` the newest checkpoints of the run folders `workdirs` (each checked against
    the world-model section `config`, as `train.restore_params` does)."""
    from roboscape_jax.world_model import train  # train imports the model stack: load it late

    return ensemble_of([train.restore_params(w, config) for w in workdirs])
