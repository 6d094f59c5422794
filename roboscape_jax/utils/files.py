"""Atomic file writes: a reader (or a resumed run) never sees a half-written file."""

from __future__ import annotations

import json
import os
from typing import Any, Callable


def write_json(path: str, payload: Any, *, sort_keys: bool = True,
               default: Callable[[Any], Any] | None = None) -> None:
    """Writes `payload` as indented JSON to `path` through a temporary file and `os.replace`,
    creating the folder. `default` as in `json.dump` (None: unserialisable values raise)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=sort_keys, default=default)
    os.replace(tmp, path)
