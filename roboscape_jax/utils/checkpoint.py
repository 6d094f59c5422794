"""Orbax checkpointing that resumes from the latest finished step.

A checkpoint holds one pytree (model, optimizer state, PRNG key, counters) plus a small JSON record
(data-iterator position, wall time, anything a launcher needs to resume exactly). Orbax writes each
step into a temporary folder and renames it when complete, so a run killed mid-save leaves the
previous step intact and `latest_step` never sees a partial one.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from roboscape_jax.types import PyTree


class Checkpointer:
    """Saves and restores `(state, meta)` under `directory`, keeping the newest `max_to_keep` steps.

    Args:
      directory: folder for the step sub-folders; created if missing.
      max_to_keep: how many finished checkpoints survive.
      save_interval_steps: `save` is a no-op for other steps unless `force=True`.
    """

    def __init__(self, directory: str, *, max_to_keep: int = 3, save_interval_steps: int = 1):
        if save_interval_steps < 1:
            raise ValueError(f"save_interval_steps must be >= 1, got {save_interval_steps}")
        self.directory = os.path.abspath(directory)
        self.save_interval_steps = save_interval_steps
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            create=True,
            enable_async_checkpointing=False,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The newest fully written step, or None for a fresh run."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(
        self, step: int, state: PyTree, meta: dict[str, Any] | None = None, *, force: bool = False
    ) -> bool:
        """Writes `state` and `meta` for `step` when it is a multiple of the interval (or forced).

        Returns whether a checkpoint was written.
        """
        if not force and step % self.save_interval_steps:
            return False
        if jax.process_count() == 1:  # one process: host copies; several: each writes its shards
            state = jax.device_get(state)
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta or {}))
        )
        saved = self._manager.save(int(step), args=args, force=True)
        self._manager.wait_until_finished()
        return bool(saved)

    def restore(self, template: PyTree, step: int | None = None) -> tuple[PyTree, dict[str, Any]]:
        """Restores the state shaped like `template` (and its meta) from `step` or the latest one.

        Raises:
          FileNotFoundError: when there is no checkpoint to restore.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no finished checkpoint under {self.directory}")
        try:
            restored = self._restore(step, template)
        except ValueError as err:
            # A checkpoint written before the state gained a field that is None (no leaves) in
            # `template` (e.g. the tokenizer's discriminator, off): restore the fields it has.
            absent = _none_fields(template)
            if not absent:
                raise
            fields = {f: getattr(template, f) for f in _field_names(template) if f not in absent}
            try:
                restored = self._restore(step, fields)
            except ValueError:
                raise err from None
            return dataclasses.replace(template, **restored.state), dict(restored.meta or {})
        return restored.state, dict(restored.meta or {})

    def _restore(self, step: int, template: PyTree):
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
        )
        return self._manager.restore(step, args=args)

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _field_names(tree: PyTree) -> list[str]:
    """The field names of a dataclass state (flax.struct), else none."""
    return [f.name for f in dataclasses.fields(tree)] if dataclasses.is_dataclass(tree) else []


def _none_fields(tree: PyTree) -> set[str]:
    """The fields of a dataclass state that are None."""
    return {f for f in _field_names(tree) if getattr(tree, f) is None}
