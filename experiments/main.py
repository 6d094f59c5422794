"""The main job: the RoboScape-R pipeline, stage by stage, into one workdir.

  python -m experiments.main --config=experiments/configs/tiny.py --workdir=runs/tiny

Stages are skipped when their output for the same config exists; stages not built yet are listed
as missing with the issue that tracks them.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.launch import parse_flags
from experiments.pipeline import Stage, run_pipeline
from roboscape_jax.utils.provenance import write_run_provenance

_CONFIG = config_flags.DEFINE_config_file("config", None, "Pipeline config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for every stage's outputs.")
_ONLY = flags.DEFINE_list("only", None, "Run only these stages (names as in the summary table).")
flags.mark_flags_as_required(["config", "workdir"])


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


def collect_data(config, out_dir):
    from data_pipeline.pipeline_stage import run_data_stage  # needs ManiSkill

    return run_data_stage(config, out_dir)


def train_tokenizer(config, out_dir):
    from experiments.stages.tokenizer import run_train_tokenizer

    return run_train_tokenizer(config, out_dir)


def tokenize_dataset(config, out_dir):
    from experiments.stages.tokenizer import run_tokenize_dataset

    return run_tokenize_dataset(config, out_dir)


def train_world_models(config, out_dir):
    from experiments.stages.world_model import run_train_world_models

    return run_train_world_models(config, out_dir)


def evaluate_world_models(config, out_dir):
    from experiments.stages.world_model import run_evaluate_world_models

    return run_evaluate_world_models(config, out_dir)


def sft(config, out_dir):
    from experiments.stages.sft import run_sft_stage

    return run_sft_stage(config, out_dir)


def ppo_world_model(config, out_dir):
    from experiments.stages.ppo_world_model import run_ppo_world_model_stage

    return run_ppo_world_model_stage(config, out_dir)


def ppo_maniskill(config, out_dir):
    from experiments.stages.ppo_maniskill import run_ppo_maniskill  # needs ManiSkill

    return run_ppo_maniskill(config, out_dir)


def evaluate(config, out_dir):
    from experiments.stages.evaluate_policies import run_evaluate_policies  # needs ManiSkill

    return run_evaluate_policies(config, out_dir)


def report(config, out_dir):
    from experiments.stages.report import run_report

    return run_report(config, out_dir,
                      [s.name for s in STAGES if s.run is not None and s.name != "report"])


STAGES = [
    Stage("simulator_check", simulator_check, ("simulator",)),
    Stage("collect_data", collect_data, ("data",)),
    Stage("train_tokenizer", train_tokenizer, ("data", "tokenizer")),
    Stage("tokenize_dataset", tokenize_dataset, ("data", "tokenizer")),
    Stage("train_world_models", train_world_models, ("data", "tokenizer", "world_models")),
    Stage("evaluate_world_models", evaluate_world_models,
          ("data", "tokenizer", "world_models", "world_model_eval")),
    Stage("world_model_env", None, issue=6),
    Stage("sft", sft, ("data", "tokenizer", "sft")),
    Stage("ppo_world_model", ppo_world_model,
          ("data", "tokenizer", "world_models", "sft", "ppo_world_model")),
    Stage("ppo_maniskill", ppo_maniskill, ("data", "tokenizer", "sft", "ppo_maniskill")),
    Stage("evaluate", evaluate, ("data", "tokenizer", "world_models", "sft", "ppo_world_model",
                                 "ppo_maniskill", "evaluate")),
    Stage("report", report, ("data", "tokenizer", "world_models", "sft", "ppo_world_model",
                             "ppo_maniskill", "evaluate")),
]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # JAX backend probing and Orbax log at INFO
    config, workdir = _CONFIG.value, _WORKDIR.value
    names = [stage.name for stage in STAGES]
    unknown = sorted(set(_ONLY.value or ()) - set(names))
    if unknown:
        raise app.UsageError(f"--only names unknown stage(s) {unknown}; stages: {names}")
    stages = [s for s in STAGES if _ONLY.value is None or s.name in _ONLY.value]
    write_run_provenance(workdir, config)
    run_pipeline(stages, config, workdir)
    report_path = os.path.join(workdir, "report", "report.md")
    if os.path.exists(report_path):
        print(f"report: {report_path}")
    print(f"workdir: {workdir}")


def run():
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
