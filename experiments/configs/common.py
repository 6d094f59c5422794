"""The pipeline config shared by `tiny`, `base` and `paper`; each variant overrides a few fields.

Sections follow the pipeline's stages. Fields for stages that do not exist yet are not declared:
an override of an unknown field fails, so a config never silently carries settings nothing reads.
"""

from __future__ import annotations

import ml_collections

from experiments.configs.tokenizer import tokenizer_config
from experiments.configs.world_model import world_model_config

# The four tasks of the paper (section 4.1); data_pipeline.scenes.TASKS holds the same names (the
# configs do not import the simulator side).
PAPER_TASKS = ("pick_and_place", "push", "pull", "move_to_target")


def parse_arg(arg: str | None, **defaults):
    """Parses `key=value,flag` strings from `--config=file.py:arg` into a ConfigDict of `defaults`.

    A bare `flag` sets a boolean default to True. Unknown keys raise ValueError.
    """
    result = ml_collections.ConfigDict(dict(defaults))
    for item in filter(None, (arg or "").split(",")):
        key, has_value, value = item.partition("=")
        if key not in defaults:
            raise ValueError(f"unknown config arg {key!r}; known: {sorted(defaults)}")
        default = defaults[key]
        if not has_value:
            if not isinstance(default, bool):
                raise ValueError(f"config arg {key!r} needs a value ({key}=...)")
            result[key] = True
        elif isinstance(default, bool):
            result[key] = value.lower() in ("1", "true", "yes")
        else:
            result[key] = type(default)(value)
    return result


def pipeline_config() -> ml_collections.ConfigDict:
    """Defaults shared by every variant (the `tiny` sizes)."""
    # The launchers' config files import parse_arg from here: import their sections lazily.
    from experiments.configs.ppo_world_model import ppo_world_model_config
    from experiments.configs.sft import sft_config

    config = ml_collections.ConfigDict()
    config.variant = "tiny"
    config.seed = 0

    config.simulator = ml_collections.ConfigDict()
    config.simulator.tasks = PAPER_TASKS
    config.simulator.image_size = 64  # each camera view, square
    config.simulator.wrist_camera = True
    config.simulator.check_steps = 20  # random-action steps per task in the simulator check

    config.data = ml_collections.ConfigDict()
    config.data.tasks = PAPER_TASKS
    config.data.objects = ()  # object names to restrict the scenes to; () = all twenty
    config.data.scenes_per_split = 4  # in-domain and out-of-domain scenes each
    # in-domain scenes, when they should differ from scenes_per_split (None: as many)
    config.data.ind_scenes_per_split = ml_collections.config_dict.placeholder(int)
    config.data.episodes_per_task_scene = 10
    # Out-of-domain episodes are only evaluated on (tokenizer, world models, reward curves):
    # `tiny` collects half as many there (80 of 240 episodes; collection 862 -> 507 s);
    # the in-domain episodes, and so every model's training data, do not change. base/paper: None.
    config.data.ood_episodes_per_task_scene = 5
    config.data.suboptimal_ratio = 0.5  # paper: 1:1
    config.data.image_size = 64  # each camera view, square
    config.data.control_freq = 10  # Hz; 100 Hz physics
    config.data.push_distance = 0.10  # metres, push and pull
    config.data.max_attempts = 3
    config.data.split_seed = 0
    config.data.num_workers = 2  # collector processes

    config.tokenizer = tokenizer_config("tiny")

    # The action and the text world model (issue 5) and their held-out evaluation.
    config.world_models = ml_collections.ConfigDict(
        dict(action=world_model_config("tiny", "action"), text=world_model_config("tiny", "text")))
    # The text model as an ensemble of `members` runs (seeds seed, seed + 1, ...; the first is
    # train_world_models', the others the train_text_ensemble stage's), decoded together
    # (world_model/ensemble.py). One `tiny` text model's out-of-domain goals swing with its seed
    # (closer to the real final frame than the initial frame in 69% / 46% of 48 `ood` episodes
    # for seeds 0 / 1, 2026-12-07); the two together: 87.5%. About 14 more minutes per member.
    config.text_ensemble = ml_collections.ConfigDict(dict(members=2))
    config.world_model_eval = ml_collections.ConfigDict(dict(
        horizon=8,  # open-loop rollout steps
        starts_per_episode=1,  # rollout clips per held-out episode
        golden_horizon=100,  # cap on the text model's golden trajectory (episodes: 60-110 steps)
        batch_size=16, num_videos=6,
        max_text_episodes=48,  # golden trajectories are long: a fixed subset per split
        reward_fit_steps=2000,  # embedding / proxy reward baselines: AdamW steps of their MLPs
        reward_fit_episodes=64,  # ... fit on this many evenly spaced train episodes (`tiny`:
        #   64 of 142, 1 minute less of the evaluation stage; base and paper fit on all)
        # MaskGIT passes per generated frame, chosen on val with the copy penalty (ties go to
        # fewer: one pass steps the `tiny` env 17-20% faster than two, and on `runs/tiny` gave
        # the same val 8-step LPIPS, 0.0899 vs 0.0900 at penalty -2)
        maskgit_steps=(1, 2),
        # A generated frame's bit margins in rollouts and the env: "model" reads them from the
        # action model's own bit probabilities (world_model/margins.py, calibrated on train
        # windows); "decoded" re-encodes its decoded image, whose decode-encode error the model
        # reads as motion (`runs/tiny`, 8-step LPIPS against the tokenized copy at penalty
        # -2 / 0: val -0.1% / -4.1% decoded, +0.4% / +1.2% model; ood -3.2% / -8.2%, 0.0% /
        # +0.7%; 2026-12-07) and costs an encoder pass per env step.
        rollout_margins="model"))

    # Behaviour cloning (issue 7) on tokenized frames, as the world-model env and the ManiSkill
    # adapter show them; `sft.model` is the policy PPO starts from. 4.9 min on 2 idle CPU cores
    # (2026-12-01): the frames through the tokenizer, then 5000 steps at batch 64 (~30 steps/s).
    config.sft = sft_config("tiny")
    config.sft.observation_frames = "tokenized"
    # Each view shifted by up to 4 pixels per training sample: from the evaluation's 32 seeds
    # (4 per task and split) 2/16 IND and 1/16 OOD successes, without it 1/16 and 0/16 (README,
    # Policies), at the same 30 steps/s.
    config.sft.augment_shift = 4
    config.sft.update(checkpoint_every_steps=500, eval_every_steps=1000)

    # PPO in the action world model from the SFT policy (issue 7). Budget about 15 min: 48 updates
    # of 16 scenes x 32 steps at about 13 s each (2 cores, 2026-12-07: the env's 512 steps 9.4
    # s, 4 epochs of 4 minibatches 2.8 s since `layers.Conv`; 12 updates took 13.3 min before
    # it), plus the 16 scenes' golden trajectories. `use_chosen_copy_penalty` /
    # `use_chosen_maskgit_steps`: env.copy_penalty / env.num_maskgit_steps are the values the
    # evaluate_world_models stage chose on val (when that stage has run).
    config.ppo_world_model = ppo_world_model_config("tiny")
    config.ppo_world_model.scenes.num_scenes = 16
    config.ppo_world_model.ppo.total_timesteps = 16 * 32 * 48
    config.ppo_world_model.updates_per_checkpoint = 2
    config.ppo_world_model.use_chosen_copy_penalty = True
    config.ppo_world_model.use_chosen_maskgit_steps = True

    # PPO in ManiSkill from the SFT policy (issue 7, "RL w. ManiSkill"): same PPO settings, the
    # simulator's rule-based dense reward, one env stepped from Python on the data's in-domain
    # scenes. match_wall_time: train as long as the ppo_world_model stage took (issue 8 compares
    # the two at equal wall time), at most total_timesteps (64 updates of 256 steps).
    config.ppo_maniskill = ml_collections.ConfigDict(dict(
        tasks=(), max_steps=100, seed=2000,  # tasks () = the data's; episode seeds from `seed`
        match_wall_time=True,
        ppo=dict(config.ppo_world_model.ppo.to_dict(), num_envs=1, num_steps=256,
                 total_timesteps=256 * 64)))

    # Fig. 2's learned reward baselines (issue 8): PPO in the same world model with the
    # embedding (iVideoGPT-style) or proxy (DiWA-style) reward head instead of Eq. (9), the
    # ppo_world_model stage's settings otherwise; add "ppo_embedding_reward" /
    # "ppo_proxy_reward" to evaluate.policies to put them in Fig. 2. Off in `tiny` (each is
    # another ppo_world_model stage, ~10 min, plus its evaluation: over make demo's 120 min).
    config.reward_baselines = ml_collections.ConfigDict(dict(rewards=()))

    # Success rates in ManiSkill (issue 8) of each policy, per task, in in-domain scenes (those of
    # the training data, new episode seeds) and out-of-domain scenes (the data's `ood` scenes).
    # Frames go through the tokenizer (`observation_frames`, as SFT and the world-model env).
    # 4 policies x 4 tasks x 2 splits x 2 episodes of <= 100 steps: 310 s measured on `tiny`
    # (2026-12-01, about 5 s per episode with the wrist camera drawn as its box; README).
    config.evaluate = ml_collections.ConfigDict(dict(
        policies=("random", "sft", "ppo_world_model", "ppo_maniskill"),  # random: a reference
        tasks=(),  # () = the data's tasks
        episodes_per_task=2,  # per task and split; scenes cycle over the split's scenes
        max_steps=100,  # expert episodes last 60-110 steps
        observation_frames="tokenized",  # "raw" only for policies trained on raw frames
        deterministic=True,  # the policy's mean action; False: sampled
        seed=1000,  # episode seeds: a function of (seed, split, task, episode), not collection's
        num_strip_frames=8))  # first episode of each policy and split: PNG strip and GIF

    # Where training state lives: replicated (data parallel) or, with fsdp, large leaves split
    # over the devices (`roboscape_jax.utils.sharding`). Placement only: the numbers are the
    # same, so no stage's cache key reads this section.
    # `devices`: each trainer is data-parallel over its first N devices (0: all). On a CPU host
    # the launcher splits the CPU into one device per core (`--cpu_devices`); a small batch can
    # run faster whole on one device than split (`tiny` sets its tokenizer to 1).
    config.parallel = ml_collections.ConfigDict(dict(
        fsdp=False, fsdp_min_size=2**14, devices=dict(tokenizer=0, world_models=0)))

    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.max_to_keep = 3
    config.log_every_steps = 10
    config.progress_every_s = 10.0
    return config


def with_reward_baselines(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Turns on Fig. 2's embedding and proxy reward PPO stages and evaluates their policies."""
    config.reward_baselines.rewards = ("embedding", "proxy")
    config.evaluate.policies = (*config.evaluate.policies, "ppo_embedding_reward",
                                "ppo_proxy_reward")
    return config
