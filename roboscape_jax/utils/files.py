"""Atomic file writes: a reader (or a resumed run) never sees a half-written file."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any, Callable


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path beside `path` (same extension, so writers that pick the format from
    it still work) to write to; on success it replaces `path`, on error it is removed. Creates the
    folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    stem, ext = os.path.splitext(path)
    tmp = f"{stem}.tmp{ext}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str, text: str) -> None:
    """Writes `text` to `path` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_json(path: str, payload: Any, *, sort_keys: bool = True,
               default: Callable[[Any], Any] | None = None) -> None:
    """Writes `payload` as indented JSON to `path` atomically, creating the folder. `default` as
    in `json.dump` (None: unserialisable values raise)."""
    write_text(path, json.dumps(payload, indent=2, sort_keys=sort_keys, default=default))
