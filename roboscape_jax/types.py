"""Shape letters used in docstrings across the library.

B batch, T time, N envs (scenes), K tokens per frame, V codebook size, D width,
H/W image height/width, C channels, A action width (7: delta xyz, delta euler xyz, gripper).
"""

from typing import Any

import jax

PRNGKey = jax.Array
PyTree = Any
Scalars = dict[str, float]

ACTION_DIM = 7
