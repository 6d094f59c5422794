"""Frozen-dataclass configs built from ml_collections sections, dicts or themselves."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def dataclass_from_config(cls: type[T], config: Any, what: str) -> T:
    """`cls(**config)` for a ConfigDict section or a dict (or `config` itself if already a `cls`).

    Raises:
      ValueError: naming the fields `cls` does not have (`what` says which config it was).
    """
    if isinstance(config, cls):
        return config
    values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} config fields: {sorted(unknown)}")
    return cls(**values)
