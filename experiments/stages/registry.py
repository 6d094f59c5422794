"""The pipeline's stages in order: name, the function that runs it, the config sections its output
depends on (a change to one reruns it). Kept apart from `experiments.main` so tests and tools can
read the list without defining the launcher's flags."""

from experiments.pipeline import Stage


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
