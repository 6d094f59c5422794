"""Whether a decode setting makes the text world model's golden-trajectory goals useful.

  python -m experiments.probe_text_decoding --workdir=runs/tiny --split=val --episodes=16

For each (temperature, copy penalty) pair of --settings, rolls the text model out from each
episode's first frame and instruction (Eq. 6, at most --horizon frames, stopping at done >= tau)
and prints one JSON line: how often the goal is closer (LPIPS) to the real final frame than the
real and the tokenized initial frame, the mean LPIPS of each, and how often done was reached.
Decode settings are chosen on `val`, never on the test (`ood`) episodes (issue 5).

With --retrieval_baseline it first prints the same figures for a goal no model generates: the
real final frame (raw, and through the tokenizer) of the `train` episode of the same task whose
first frame is nearest in pixels. What this data supports a goal model to reach.
"""

import json
import os
import time

import ml_collections
import numpy as np
from absl import app, flags, logging

from experiments.configs import tiny
from experiments.configs.sft import DATASET_SUBDIR
from experiments.stages import world_model as stage
from roboscape_jax.world_model import evaluate as wm_eval

_WORKDIR = flags.DEFINE_string("workdir", "runs/tiny", "Pipeline workdir of a `tiny` run.")
_SPLIT = flags.DEFINE_string("split", "val", "Token-cache split.")
_EPISODES = flags.DEFINE_integer("episodes", 16, "Episodes, evenly spaced over the split.")
_HORIZON = flags.DEFINE_integer("horizon", 100, "Cap on the golden trajectory's length.")
_TEXT_MODEL = flags.DEFINE_string("text_model", "", "A text world-model run folder (default: the "
                                  "workdir's train_world_models/text); a stand-alone run's "
                                  "config.json gives the model's config.")
_MASKGIT_STEPS = flags.DEFINE_integer("maskgit_steps", 0, "MaskGIT passes per frame (0: the "
                                      "model config's).")
_GOAL_GRID = flags.DEFINE_string("goal_grid", "", "Also write each setting's goals next to the "
                                 "first and real final frames as a PNG: this path with the "
                                 "setting appended (empty: none).")
_RETRIEVAL = flags.DEFINE_bool("retrieval_baseline", False, "Also score the nearest same-task "
                               "training episode's real final frame as the goal.")
_SETTINGS = flags.DEFINE_list("settings", ["0:0", "1:0", "1:1", "1:2", "0:2", "0:4"],
                              "temperature:copy_penalty pairs.")


def parse_setting(text: str) -> tuple[float, float]:
    """'T:P' -> (temperature, copy penalty)."""
    try:
        temperature, penalty = (float(x) for x in text.split(":"))
    except ValueError as err:
        raise app.UsageError(f"--settings entry {text!r} is not temperature:copy_penalty") from err
    if temperature < 0:
        raise app.UsageError(f"--settings entry {text!r}: temperature must be >= 0")
    return temperature, penalty


def retrieval_goals(ctx, workdir: str, out_dir: str, episodes, first) -> dict[str, np.ndarray]:
    """{"raw", "tokenized"}: float [N, H, W, 3] final frames of the `train` episode of each
    episode's task whose first frame is nearest (mean squared pixel difference) to `first`."""
    train = stage.load_cache(out_dir, "train")
    frames = stage._frames(os.path.join(workdir, DATASET_SUBDIR), "train", train)
    train_first = np.stack([frames[ep.episode_id][0] for ep in train]).astype(np.float32)
    task = np.array([ep.task_id for ep in train])
    nearest = []
    for ep, f in zip(episodes, first, strict=True):
        same = np.flatnonzero(task == ep.task_id)
        if not len(same):
            raise ValueError(f"no train episode of task {ep.task_id} ({ep.episode_id})")
        distance = np.square(train_first[same] - f.astype(np.float32)).mean(axis=(1, 2, 3))
        nearest.append(train[same[np.argmin(distance)]])
    raw = np.stack([frames[ep.episode_id][-1] for ep in nearest]).astype(np.float32) / 255.0
    tokenized = wm_eval.decode_frames(ctx, np.stack([ep.tokens[-1] for ep in nearest]))
    return {"raw": raw, "tokenized": tokenized}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    settings = [parse_setting(s) for s in _SETTINGS.value]
    config = tiny.get_config()
    out_dir = os.path.join(_WORKDIR.value, "evaluate_world_models")
    text_model = _TEXT_MODEL.value or os.path.join(_WORKDIR.value, "train_world_models", "text")
    run_config = os.path.join(text_model, "config.json")
    if os.path.exists(run_config):  # a stand-alone run: its own model config, not tiny's
        with open(run_config) as f:
            config.world_models.text = ml_collections.ConfigDict(json.load(f)["world_model"])
    ctx = stage._contexts(config, out_dir, {"text": text_model})["text"]  # the text model alone
    episodes = stage.evenly_spaced(stage.load_cache(out_dir, _SPLIT.value), _EPISODES.value)
    frames = stage._frames(os.path.join(_WORKDIR.value, DATASET_SUBDIR), _SPLIT.value, episodes)
    sampling = config.world_models.text.sampling
    if _RETRIEVAL.value:
        first = np.stack([frames[ep.episode_id][0] for ep in episodes])
        final = np.stack([frames[ep.episode_id][-1] for ep in episodes])
        lp_first = wm_eval.score_frames(ctx, first.astype(np.float32) / 255.0, final)["lpips"]
        for kind, goal in retrieval_goals(ctx, _WORKDIR.value, out_dir, episodes, first).items():
            lp_goal = wm_eval.score_frames(ctx, goal, final)["lpips"]
            print(json.dumps({"split": _SPLIT.value, "goal": f"retrieval_{kind}",
                              "goal_closer_than_initial_fraction":
                              round(float(np.mean(lp_goal < lp_first)), 4),
                              "lpips_goal_to_final": round(float(lp_goal.mean()), 4),
                              "lpips_initial_to_final": round(float(lp_first.mean()), 4)}),
                  flush=True)
    for temperature, penalty in settings:
        start = time.time()
        metrics, images = wm_eval.evaluate_text_model(
            ctx, episodes, frames, horizon=_HORIZON.value, tau=sampling.done_threshold,
            num_steps=_MASKGIT_STEPS.value or sampling.num_steps, temperature=temperature,
            copy_penalty=penalty)
        print(json.dumps({"split": _SPLIT.value, "temperature": temperature,
                          "maskgit_steps": _MASKGIT_STEPS.value or sampling.num_steps,
                          "copy_penalty": penalty, "wall_s": round(time.time() - start),
                          **{k: round(v, 4) for k, v in metrics.items()}}), flush=True)
        if _GOAL_GRID.value:
            root, ext = os.path.splitext(_GOAL_GRID.value)
            wm_eval.write_goal_grid(f"{root}_t{temperature:g}_p{penalty:g}{ext or '.png'}",
                                    images, num=len(episodes))


if __name__ == "__main__":
    app.run(main)
