r"""Benchmarks our PPO against PureJaxRL's ppo.py on gymnax CartPole-v1.

Both run jit(vmap(train)) over the same seeds with PureJaxRL's default
hyper-parameters, in one process; compile and run wall times are reported
separately, with the per-repeat ratio to PureJaxRL. With --cpu_devices=N a
third row runs our seeds shared out over N CPU devices (`roboscape_jax.rl.seeds`).
PureJaxRL is imported from a checkout, never copied:

  python experiments/benchmark_ppo_gymnax.py --purejaxrl_dir=/tmp/purejaxrl \
      --seeds=4 --repeats=8 --cpu_devices=2 --out=/tmp/bench.json

Runtime shims (not PureJaxRL code): its ppo.py targets gymnax 0.x, whose step
returns 5 values, so its ``gymnax.make`` is pointed at an adapter that merges
terminated|truncated into ``done``; ``distrax`` (not installed here) is
replaced by a minimal Categorical; ``brax``/``navix`` imports in its
wrappers.py are stubbed because CartPole does not use them.
"""

import json
import os
import sys
import time
import types

# XLA:CPU's flags must be set before the backend starts, and the imports below start it. On two
# cores these small programs lose more to hand-offs between XLA's threads than they gain
# (docs/performance_history.md): both implementations run with the same single-threaded flags unless
# --nosingle_threaded_xla is given. (Until 2026-12-03 this also held
# "intra_op_parallelism_threads=1", a TensorFlow option, not an XLA flag: XLA stops reading
# XLA_FLAGS at it, so it did nothing itself but hid any flag after it.)
SINGLE_THREADED_XLA = "--xla_cpu_multi_thread_eigen=false"
_OFF = ("--nosingle_threaded_xla", "--single_threaded_xla=false", "--single_threaded_xla=False",
        "--single_threaded_xla=0")
if not any(arg in _OFF for arg in sys.argv[1:]):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SINGLE_THREADED_XLA}".strip()

from experiments.cpu_devices import cpu_devices_from_argv  # noqa: E402

cpu_devices_from_argv(1)  # --cpu_devices=N: N host CPU devices, also before the backend starts

import gymnax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from roboscape_jax.policies import ActorCritic  # noqa: E402
from roboscape_jax.rl import LogWrapper, PPOConfig, make_train  # noqa: E402
from roboscape_jax.rl.seeds import compile_over_seeds, seed_devices  # noqa: E402

_DIR = flags.DEFINE_string("purejaxrl_dir", None, "PureJaxRL checkout.", required=True)
_SEEDS = flags.DEFINE_integer("seeds", 4, "Seeds, vmapped.")
_STEPS = flags.DEFINE_integer("total_timesteps", 500_000, "Env steps per seed.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Interleaved timed runs of each.")
_OUT = flags.DEFINE_string("out", None, "Optional JSON result path.")
_BOOTSTRAP = flags.DEFINE_bool(
    "bootstrap_truncation", True,
    "Ours bootstraps V(final observation) on truncation (one more critic pass per rollout step, "
    "PPOConfig.final_values_in_rollout); PureJaxRL does not. False runs PureJaxRL's algorithm "
    "exactly.")
flags.DEFINE_integer(
    "cpu_devices", 1,
    "Split the CPU into this many XLA devices (read before absl parses flags). When the seeds "
    "split over more than one of them, a third row, ours_over_devices, runs our seeds with "
    "`roboscape_jax.rl.seeds` (each device its own thread); PureJaxRL's ppo.py and the `ours` "
    "row keep jit(vmap(train)) on one device, as published.")
flags.DEFINE_bool("single_threaded_xla", True,
                  f"Run both under XLA_FLAGS='{SINGLE_THREADED_XLA}' (read before absl parses "
                  "flags; see the module header).")
_ENV = "CartPole-v1"


class _DistraxCategorical:
    """distrax.Categorical subset used by PureJaxRL's ppo.py."""

    def __init__(self, logits):
        self.logits = jax.nn.log_softmax(logits, axis=-1)

    def sample(self, seed):
        return jax.random.categorical(seed, self.logits, axis=-1)

    def log_prob(self, value):
        one_hot = jax.nn.one_hot(value, self.logits.shape[-1], dtype=self.logits.dtype)
        return jnp.sum(self.logits * one_hot, axis=-1)

    def entropy(self):
        return -jnp.sum(jnp.exp(self.logits) * self.logits, axis=-1)


class _FiveValueStep:
    """gymnax 1.0 env seen through the gymnax 0.x step API."""

    def __init__(self, env):
        self._env = env

    def __getattr__(self, name):
        return getattr(self._env, name)

    def step(self, key, state, action, params=None):
        obs, state, reward, term, trunc, info = self._env.step(key, state, action, params)
        return obs, state, reward, jnp.logical_or(term, trunc), info


def _import_purejaxrl(root: str) -> types.ModuleType:
    for name in (
        "brax",
        "brax.envs",
        "brax.envs.wrappers",
        "navix",
        "brax.envs.wrappers.training",
    ):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["brax.envs"].wrappers = sys.modules["brax.envs.wrappers"]
    sys.modules["brax.envs.wrappers.training"].EpisodeWrapper = None
    sys.modules["brax.envs.wrappers.training"].AutoResetWrapper = None
    sys.modules["brax"].envs = sys.modules["brax.envs"]
    sys.modules.setdefault("distrax", types.SimpleNamespace(Categorical=_DistraxCategorical))
    sys.path.insert(0, f"{root}/purejaxrl")
    import ppo as pjr_ppo  # noqa: PLC0415  (PureJaxRL's module, from the checkout)

    env, params = gymnax.make(_ENV)
    pjr_ppo.gymnax = types.SimpleNamespace(make=lambda name: (_FiveValueStep(env), params))
    return pjr_ppo


def _compile(train, keys, over_devices: bool = False) -> tuple[float, object]:
    t0 = time.perf_counter()
    if over_devices:
        compiled = compile_over_seeds(train, keys)
    else:
        compiled = jax.jit(jax.vmap(train)).lower(keys).compile()
    return time.perf_counter() - t0, compiled


def _run(compiled, keys) -> tuple[float, float, object]:
    """(wall s, process CPU s, output): CPU time above wall time means XLA spread the run over
    threads (on two cores, tiny programs lose to the hand-offs)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = jax.block_until_ready(compiled(keys))
    return time.perf_counter() - t0, time.process_time() - c0, out


# The hyper-parameters PureJaxRL's ppo.py reads (upper-cased in its config dict), under the names
# PPOConfig gives them; PPOConfig's own options (advantage normalisation, truncation bootstrap,
# ...) are left out, so a field added to PPOConfig never reaches PureJaxRL.
PUREJAXRL_KEYS = ("num_envs", "num_steps", "total_timesteps", "update_epochs", "num_minibatches",
                  "gamma", "gae_lambda", "clip_eps", "ent_coef", "vf_coef", "max_grad_norm", "lr",
                  "anneal_lr", "activation")


def _final_return(metrics) -> np.ndarray:
    """PureJaxRL's figure: mean over the last rollout of returned_episode_returns."""
    curve = metrics["returned_episode_returns"]  # [S, U, ...]
    return np.asarray(curve.reshape(curve.shape[:2] + (-1,)).mean(-1)[:, -1])


def main(_) -> None:
    cfg = PPOConfig(total_timesteps=_STEPS.value,  # PureJaxRL CartPole defaults
                    bootstrap_truncation=_BOOTSTRAP.value)
    pjr_cfg = {k.upper(): getattr(cfg, k) for k in PUREJAXRL_KEYS}
    pjr_cfg.update(ENV_NAME=_ENV, DEBUG=False)
    pjr_ppo = _import_purejaxrl(_DIR.value)
    env, params = gymnax.make(_ENV)
    ours = make_train(cfg, LogWrapper(env), params, ActorCritic(2, activation=cfg.activation))
    keys = jax.random.split(jax.random.key(0), _SEEDS.value)
    trains = {"purejaxrl": pjr_ppo.make_train(dict(pjr_cfg)), "ours": ours}
    devices = seed_devices(_SEEDS.value)
    if len(devices) > 1:  # else the same program as `ours`
        trains["ours_over_devices"] = ours
    compiled, rows, outs = {}, {}, {}
    for name, train in trains.items():
        compile_s, compiled[name] = _compile(train, keys, over_devices=name == "ours_over_devices")
        rows[name] = dict(impl=name, compile_s=round(compile_s, 2), run_s=[], cpu_s=[],
                          devices=len(devices) if name == "ours_over_devices" else 1)
    names = list(trains)
    for repeat in range(_REPEATS.value):
        # Interleaved, so all see the same machine load, and in alternating order (ABBA), so a
        # cost that falls on whichever runs first or last in a round does not favour any.
        for name in names if repeat % 2 == 0 else names[::-1]:
            run_s, cpu_s, outs[name] = _run(compiled[name], keys)
            rows[name]["run_s"].append(round(run_s, 2))
            rows[name]["cpu_s"].append(round(cpu_s, 2))
    for name, row in rows.items():
        out = outs[name]
        final = _final_return(out["metrics"] if name == "purejaxrl" else out[1])
        best = min(row["run_s"])
        row.update(run_s_min=best, run_s_median=float(np.median(row["run_s"])))
        row.update(final_return_per_seed=final.tolist(), final_return_mean=float(final.mean()))
        row.update(steps_per_s_best=round(_SEEDS.value * cfg.total_timesteps / best))
        print(json.dumps(row), flush=True)
    paired = {}
    for name in names[1:]:
        ratios = [o / p for o, p in zip(rows[name]["run_s"], rows["purejaxrl"]["run_s"],
                                        strict=True)]
        paired[name] = dict(over_purejaxrl_per_repeat=[round(r, 3) for r in ratios],
                            median=round(float(np.median(ratios)), 3),
                            repeats_not_slower=sum(r <= 1.0 for r in ratios))
    print(json.dumps(dict(paired=paired)), flush=True)
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}", flush=True)
    results = list(rows.values())
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump(dict(env=_ENV, seeds=_SEEDS.value, config=vars(cfg), rows=results,
                           paired=paired, xla_flags=os.environ.get("XLA_FLAGS", "")), f)


if __name__ == "__main__":
    app.run(main)
