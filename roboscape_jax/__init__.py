"""roboscape-jax: a learned world model as a complete RL environment (RoboScape-R in JAX).

The library imports JAX, Flax, Optax, Orbax and chex only: the simulator (ManiSkill3, SAPIEN, torch)
lives in `data_pipeline/` and the simulator adapters, so the JAX parts run on machines without it.
"""

__version__ = "0.1.0"
