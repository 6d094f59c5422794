"""The world model as an RL environment (RoboScape-R sections 3.1-3.2, Eqs. 5-9).

  observation.py      the policy's observation; ObservationAdapter for real (simulator) frames
  rewards.py          Eq. (5) dense LPIPS reward, Eqs. (7)-(8) sparse done reward
  reward_baselines.py the paper's embedding (iVideoGPT) and proxy (DiWA) reward heads
  scenes.py           Scenes, make_scenes (goal frames from the golden trajectory, Eq. 6)
  world_model_env.py  WorldModelEnv: gymnax-style pure reset/step over the action world model
  gym_wrapper.py      Gymnasium Env and VectorEnv around the jitted env (numpy in and out)
"""

from roboscape_jax.env.observation import (
    AdapterState,
    ObservationAdapter,
    observation_frames,
    policy_observation,
)
from roboscape_jax.env.rewards import dense_reward, sparse_reward
from roboscape_jax.env.scenes import Scenes, check_scenes, make_scenes
from roboscape_jax.env.world_model_env import (
    EnvConfig,
    EnvParams,
    EnvState,
    WorldModelEnv,
    integrate_gripper,
    sanitize_action,
)

__all__ = [
    "AdapterState",
    "ObservationAdapter",
    "EnvConfig",
    "EnvParams",
    "EnvState",
    "Scenes",
    "WorldModelEnv",
    "check_scenes",
    "dense_reward",
    "integrate_gripper",
    "make_scenes",
    "observation_frames",
    "policy_observation",
    "sanitize_action",
    "sparse_reward",
]
