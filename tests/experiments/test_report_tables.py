"""The report's tables from hand-made evaluation results: Table 2's change from SFT, wall times;
the training-curves section."""

from experiments.stages import report
from experiments.stages.evaluate_policies import summarise


def _results():
    def records(wins):  # {(split, task): successes of 4}
        return [dict(split=s, task=t, success=i < n, steps=50)
                for (s, t), n in wins.items() for i in range(4)]

    cells = {("ind", "pick_and_place"): 1, ("ind", "move_to_target"): 2,
             ("ood", "pick_and_place"): 0, ("ood", "move_to_target"): 1}
    better = {k: v + 1 for k, v in cells.items()}
    return {"random": summarise(records(dict.fromkeys(cells, 0))),
            "sft": summarise(records(cells)),
            "ppo_world_model": summarise(records(better))}


def test_table2_gives_each_trained_policy_its_change_from_sft():
    table = report.table2(_results())
    lines = table.splitlines()
    assert lines[0] == ("| policy | pick_and_place IND | pick_and_place OOD | move_to_target IND "
                        "| move_to_target OOD |")
    assert lines[2] == "| SFT | 25% (1/4) | 0% (0/4) | 50% (2/4) | 25% (1/4) |"
    assert lines[3] == ("| RL w. World Model | 50% (2/4), +25 pts | 25% (1/4), +25 pts | "
                        "75% (3/4), +25 pts | 50% (2/4), +25 pts |")
    assert "random" not in table and len(lines) == 4  # trained policies only; no ManiSkill run


def test_table2_marks_a_task_the_evaluation_did_not_run():
    results = _results()
    del results["sft"]["ind"]["pick_and_place"]
    row = report.table2(results).splitlines()[2]
    assert row.startswith("| SFT | - | 0% (0/4) |")


def test_wall_time_table_totals_the_stages_that_ran():
    table = report.wall_time_table({"a": {"wall_time_s": 60.0}, "b": None,
                                    "c": {"wall_time_s": 30.0},
                                    "d": {"wall_time_s": 0.1, "result": {"skipped": 1.0}}})
    assert "| b | not run |" in table and "| d | skipped (off in this config) |" in table
    assert table.splitlines()[-1] == "| total | 1m30s |"


def test_fig2_starts_every_module_at_sft_and_skips_modules_that_did_not_run(tmp_path):
    results = _results()
    records = {"ppo_world_model": {"wall_time_s": 600.0, "result": {}},
               "ppo_maniskill": {"wall_time_s": 650.0, "result": {"train_wall_s": 590.0}},
               "ppo_embedding_reward": {"wall_time_s": 1.0, "result": {"skipped": 1.0}},
               "ppo_proxy_reward": None}
    points = report.fig2_points(results, records)
    assert list(points) == ["world model (ours)"]  # ManiSkill's policy was not evaluated
    (t0, start), (t1, end) = points["world model (ours)"]
    assert (t0, t1) == (0.0, 600.0)
    assert start["ind"]["successes"] == 3 and end["ind"]["successes"] == 5
    results["ppo_maniskill"] = results["sft"]
    points = report.fig2_points(results, records)
    assert points["rule-based (ManiSkill)"][-1][0] == 590.0  # its own training time
    table = report.fig2_table(points)
    assert "| world model (ours) | 10m00s | 62% (5/8) | 38% (3/8) |" in table
    report.plot_fig2(points, str(tmp_path / "fig2.png"))
    assert (tmp_path / "fig2.png").stat().st_size > 1000
    section = "\n".join(report.fig2_section(results, records))
    assert "Not run in this workdir: embedding-based, proxy-based" in section


def test_training_curves_section_lists_what_the_trainers_wrote(tmp_path):
    assert "No trainer in this workdir wrote its curves." in report.training_curves_section(
        str(tmp_path))
    (tmp_path / "train_world_models" / "action").mkdir(parents=True)
    (tmp_path / "train_world_models" / "action" / "curves.png").write_bytes(b"png")
    section = "\n".join(report.training_curves_section(str(tmp_path)))
    assert "![action world model](curves/train_world_models_action_curves.png)" in section
    assert "tokenizer" not in section
    for k in (2, 1, 10):  # listed in member order, not in the folder's name order
        (tmp_path / "train_text_ensemble" / f"member{k}").mkdir(parents=True)
        (tmp_path / "train_text_ensemble" / f"member{k}" / "curves.png").write_bytes(b"png")
    (tmp_path / "train_text_ensemble" / "member3").mkdir()  # not trained yet: no curves
    names = [name for _, name in report.training_curves(str(tmp_path))]
    assert names == ["action world model", *[f"text world model, ensemble member {k}"
                                             for k in (1, 2, 10)]]
