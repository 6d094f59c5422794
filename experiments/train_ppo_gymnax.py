r"""Trains PPO on a gymnax env over several seeds (vmapped, and shared out over the devices
present: `roboscape_jax.rl.seeds`) and reports timing. On a CPU host the launcher splits the CPU
into one XLA device per core (--cpu_devices), so the seeds run on all cores at once.

  python experiments/train_ppo_gymnax.py \
      --config=experiments/configs/ppo_gymnax.py:env=cartpole \
      --seeds=4 --out=/tmp/r.json
"""

import json
import os
import time

from experiments.cpu_devices import cpu_devices_from_argv

DEFAULT_CPU_DEVICES = os.cpu_count() or 1
cpu_devices_from_argv(DEFAULT_CPU_DEVICES)  # before gymnax/JAX start XLA's backend

import gymnax  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from roboscape_jax.policies import ActorCritic  # noqa: E402
from roboscape_jax.rl import ClipActionWrapper, LogWrapper, PPOConfig, make_train  # noqa: E402
from roboscape_jax.rl.seeds import compile_over_seeds, seed_devices  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_SEEDS = flags.DEFINE_integer("seeds", 4, "Number of seeds, vmapped over the devices.")
_OUT = flags.DEFINE_string("out", None, "Optional JSON result path.")
_RANDOM = flags.DEFINE_bool("random_baseline", False, "Also time a random policy.")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", DEFAULT_CPU_DEVICES,
    "XLA devices to split the host CPU into (default: one per core; read before absl parses "
    "flags); seeds are shared out over them. 1 leaves XLA_FLAGS alone.")


def random_policy_return(env, env_params, rng: jax.Array, num_envs: int = 64) -> float:
    """Mean return of uniformly random actions over 3 episode lengths."""
    rng_reset, rng_run = jax.random.split(rng)
    reset_keys = jax.random.split(rng_reset, num_envs)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(reset_keys, env_params)

    def step(state, key):
        rng_act, rng_env = jax.random.split(key)
        actions = jax.vmap(env.action_space(env_params).sample)(jax.random.split(rng_act, num_envs))
        out = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(rng_env, num_envs), state, actions, env_params
        )
        return out[1], (out[5]["returned_episode_returns"], out[5]["returned_episode"])

    steps = 3 * int(env_params.max_steps_in_episode)
    _, (returns, ended) = jax.lax.scan(step, state, jax.random.split(rng_run, steps))
    return float(returns[ended].mean())


def main(_) -> None:
    config = _CONFIG.value
    ppo = PPOConfig.from_config(config.ppo)
    env, env_params = gymnax.make(config.env_name)
    discrete = hasattr(env.action_space(env_params), "n")
    env = LogWrapper(env if discrete else ClipActionWrapper(env))
    width = env.action_space(env_params).n if discrete else env.num_actions
    network = ActorCritic(width, discrete, activation=ppo.activation, **config.model)
    keys = jax.random.split(jax.random.key(config.seed), _SEEDS.value)
    t0 = time.perf_counter()
    compiled = compile_over_seeds(make_train(ppo, env, env_params, network), keys)
    t1 = time.perf_counter()
    _, metrics = jax.block_until_ready(compiled(keys))
    run_s = time.perf_counter() - t1
    # PureJaxRL's figure: last finished return per env, averaged over the last rollout.
    final = np.asarray(metrics["returned_episode_returns"][:, -1])
    steps_per_s = _SEEDS.value * ppo.total_timesteps / run_s
    last_episodes = float(np.nanmean(metrics["episode_return"][:, -1]))
    result = dict(env=config.env_name, seeds=_SEEDS.value, devices=len(seed_devices(_SEEDS.value)),
                  compile_s=t1 - t0, run_s=run_s)
    result.update(steps_per_s=steps_per_s, final_return_mean=float(final.mean()))
    result.update(final_return_per_seed=final.tolist(), last_update_episode_return=last_episodes)
    if _RANDOM.value:
        result["random_policy_return"] = random_policy_return(
            env, env_params, jax.random.key(config.seed + 1)
        )
    print(json.dumps(result, indent=1))
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump(dict(result, config=config.to_dict()), f)


if __name__ == "__main__":
    app.run(main)
