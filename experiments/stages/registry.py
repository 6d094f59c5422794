"""The pipeline's stages in order: name, the function that runs it, the config sections its output
depends on (a change to one reruns it). Kept apart from `experiments.main` so tests and tools can
read the list without defining the launcher's flags."""

import importlib
from typing import Any

from experiments.pipeline import Stage, StageFn, stage_identity


def simulator_check(config, out_dir):
    from data_pipeline.simulator_check import run_simulator_check  # needs ManiSkill

    sim = config.simulator
    return run_simulator_check(
        sim.tasks,
        out_dir,
        image_size=sim.image_size,
        wrist_camera=sim.wrist_camera,
        num_steps=sim.check_steps,
        seed=config.seed,
    )


def _lazy(module: str, name: str) -> StageFn:
    """The stage function `module.name`, imported only when the stage runs (some need ManiSkill,
    all need JAX, and `--only` should not pay for the others)."""

    def run(config, out_dir):
        return getattr(importlib.import_module(module), name)(config, out_dir)

    run.__name__ = name
    return run


# what the PPO-in-the-world-model stages read from evaluate_world_models' record
_PPO_WM_INPUTS = _lazy("experiments.stages.ppo_world_model", "derived_inputs")


def report_inputs(config, workdir: str) -> dict[str, Any]:
    """The runs of every stage the report summarises: any rerun one reruns the report."""
    del config
    return {s.name: stage_identity(workdir, s.name) for s in STAGES
            if s.run is not None and s.name != "report"}


def report(config, out_dir):
    from experiments.stages.report import run_report

    return run_report(config, out_dir,
                      [s.name for s in STAGES if s.run is not None and s.name != "report"])


STAGES = [
    Stage("simulator_check", simulator_check, ("simulator",)),
    Stage("collect_data", _lazy("data_pipeline.pipeline_stage", "run_data_stage"), ("data",)),
    Stage("train_tokenizer", _lazy("experiments.stages.tokenizer", "run_train_tokenizer"),
          ("data", "tokenizer"), restart_on_change=True),
    Stage("tokenize_dataset", _lazy("experiments.stages.tokenizer", "run_tokenize_dataset"),
          ("data", "tokenizer")),
    Stage("train_world_models", _lazy("experiments.stages.world_model", "run_train_world_models"),
          ("data", "tokenizer", "world_models"), restart_on_change=True),
    Stage("train_text_ensemble", _lazy("experiments.stages.world_model",
                                       "run_train_text_ensemble"),
          ("data", "tokenizer", "world_models", "text_ensemble"), restart_on_change=True),
    Stage("evaluate_world_models",
          _lazy("experiments.stages.world_model", "run_evaluate_world_models"),
          ("data", "tokenizer", "world_models", "text_ensemble", "world_model_eval")),
    Stage("sft", _lazy("experiments.stages.sft", "run_sft_stage"), ("data", "tokenizer", "sft"),
          restart_on_change=True),
    Stage("ppo_world_model",
          _lazy("experiments.stages.ppo_world_model", "run_ppo_world_model_stage"),
          ("data", "tokenizer", "world_models", "text_ensemble", "sft", "ppo_world_model"),
          restart_on_change=True, derived_inputs=_PPO_WM_INPUTS),
    Stage("ppo_maniskill", _lazy("experiments.stages.ppo_maniskill", "run_ppo_maniskill"),
          ("data", "tokenizer", "sft", "ppo_maniskill"), restart_on_change=True,
          derived_inputs=_lazy("experiments.stages.ppo_maniskill", "derived_inputs")),
    *[Stage(name, _lazy("experiments.stages.ppo_world_model", f"run_{name}"),
            ("data", "tokenizer", "world_models", "text_ensemble", "sft", "ppo_world_model",
             "reward_baselines"),
            restart_on_change=True, derived_inputs=_PPO_WM_INPUTS)
      for name in ("ppo_embedding_reward", "ppo_proxy_reward")],
    Stage("evaluate", _lazy("experiments.stages.evaluate_policies", "run_evaluate_policies"),
          ("data", "tokenizer", "world_models", "text_ensemble", "sft", "ppo_world_model",
           "ppo_maniskill", "reward_baselines", "evaluate"),
          derived_inputs=_lazy("experiments.stages.evaluate_policies", "derived_inputs")),
    Stage("report", report, ("data", "tokenizer", "world_models", "text_ensemble", "sft",
                             "ppo_world_model", "ppo_maniskill", "reward_baselines", "evaluate"),
          derived_inputs=report_inputs),
]
