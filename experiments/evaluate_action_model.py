"""The action-model half of the evaluate_world_models stage, for a workdir whose text model is
not trained (issue 5's evaluation CLI): copy-penalty and MaskGIT-pass sweep on val, one-step
metrics, 8-step open-loop rollouts and controllability on val and ood, OOD rollout GIFs.

  python -m experiments.evaluate_action_model --workdir=runs/tiny

Writes `<workdir>/evaluate_world_models/action/eval/report.json` and prints the headline figures.
"""

import os

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", "runs/tiny", "Pipeline workdir with train_world_models.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    from experiments.configs import tiny
    from experiments.stages import world_model as stage
    from experiments.stages.tokenizer import dataset_dir

    config = tiny.get_config()
    out_dir = os.path.join(_WORKDIR.value, "evaluate_world_models")
    os.makedirs(out_dir, exist_ok=True)
    splits = {k: stage.load_cache(out_dir, k) for k in ("train", "val", "ood")}
    frames = {k: stage._frames(dataset_dir(out_dir), k, splits[k]) for k in ("val", "ood")}
    model_dir = os.path.join(_WORKDIR.value, "train_world_models", "action")
    ctx = stage._contexts(config, out_dir, {"action": model_dir})["action"]
    report = stage.evaluate_action(config, ctx, out_dir, splits, frames)
    print(f"chosen on val: copy penalty {report['copy_penalty']}, MaskGIT passes "
          f"{report['maskgit_steps']}")
    for split in ("val", "ood"):
        one, loop = report[split]["one_step"], report[split]["open_loop"]
        print(f"{split}: token accuracy {one['token_accuracy']:.4f} (copy "
              f"{one['copy_accuracy']:.4f}), changed-token accuracy "
              f"{one['changed_token_accuracy']:.4f}, done AUROC {one['done_auroc']:.3f}; 8-step "
              f"LPIPS {loop['model_lpips']:.4f} vs tokenized copy "
              f"{loop['tokenized_copy_lpips']:.4f}")


if __name__ == "__main__":
    app.run(main)
