"""Scores a pipeline workdir's tokenizer on one dataset split (issue 4's evaluation CLI).

  python -m experiments.evaluate_tokenizer --workdir=runs/tiny --split=ood

Reads the tokenizer section the workdir ran with (its config.json), encodes and decodes up to
--max_frames frames of the split (each given its episode's first frame when the tokenizer is
reference-conditioned) and writes `<workdir>/train_tokenizer/eval_<split>/{metrics.json,
reconstructions.png}`: PSNR, SSIM, LPIPS, code usage and perplexity, and PSNR on the pixels
that moved since the episode's first frame vs the static rest (`tokenizer.evaluate`).
"""

import os

from absl import app, flags, logging

from experiments.stages.tokenizer import DATASET_SUBDIR, tokenizer_section

_WORKDIR = flags.DEFINE_string("workdir", "runs/tiny", "Pipeline workdir (dataset + tokenizer).")
_SPLIT = flags.DEFINE_enum("split", "ood", ["train", "val", "ood"], "Dataset split to score.")
_MAX_FRAMES = flags.DEFINE_integer("max_frames", 4096, "Frames to score (from the split's start).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    from data_pipeline.dataset import load_frames  # reads the TFDS dataset
    from roboscape_jax.tokenizer import train as tok_train
    from roboscape_jax.tokenizer.frames import SplitFrameSource

    workdir, split = _WORKDIR.value, _SPLIT.value
    config = tokenizer_section(workdir)
    model, params = tok_train.restore_params(os.path.join(workdir, "train_tokenizer"), config)
    frames, lengths = load_frames(os.path.join(workdir, DATASET_SUBDIR), split,
                                  return_lengths=True)
    source = SplitFrameSource(frames[:1], frames, [1], lengths)
    lpips = tok_train.load_lpips_params() if config.eval.lpips else None
    out_dir = os.path.join(workdir, "train_tokenizer", f"eval_{split}")
    metrics = tok_train.evaluate_held_out(config, model, params, source, out_dir, lpips, step=-1,
                                          max_frames=_MAX_FRAMES.value)
    print(f"tokenizer {split}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    print(f"written: {out_dir}")


if __name__ == "__main__":
    app.run(main)
