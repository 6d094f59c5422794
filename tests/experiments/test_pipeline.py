"""Stage caching of the pipeline runner and a debug run of the main launcher."""

import json
import subprocess
import sys

import ml_collections
import pytest

from experiments.pipeline import Stage, config_hash, run_pipeline, stage_identity, summary_table
from tests.conftest import REPO_ROOT


def _config(size=1):
    return ml_collections.ConfigDict({"seed": 0, "model": {"size": size}, "other": {"x": 1}})


def test_stages_run_once_then_skip_until_their_config_changes(tmp_path):
    calls = []

    def stage_fn(config, out_dir):
        calls.append(out_dir)
        return {"size": config.model.size}

    stages = [Stage("train", stage_fn, ("model",)), Stage("later", None, issue=9)]
    first = run_pipeline(stages, _config(), str(tmp_path))
    assert first["train"]["status"] == "done" and first["train"]["result"] == {"size": 1}
    assert first["later"] == {"status": "missing", "issue": 9}
    assert run_pipeline(stages, _config(), str(tmp_path))["train"]["status"] == "cached"
    assert len(calls) == 1
    assert run_pipeline(stages, _config(size=2), str(tmp_path))["train"]["status"] == "done"
    assert len(calls) == 2
    summary = json.loads((tmp_path / "pipeline_summary.json").read_text())
    assert summary["train"]["result"] == {"size": 2}


def test_a_run_of_some_stages_keeps_the_others_in_the_summary(tmp_path):
    stages = [Stage("first", lambda config, out_dir: {"n": 1}, ("model",)),
              Stage("second", lambda config, out_dir: {"n": config.model.size}, ("model",))]
    run_pipeline(stages, _config(), str(tmp_path))
    run_pipeline(stages[1:], _config(size=2), str(tmp_path))  # as `--only=second`
    summary = json.loads((tmp_path / "pipeline_summary.json").read_text())
    assert list(summary) == ["first", "second"]
    assert summary["first"]["result"] == {"n": 1} and summary["second"]["result"] == {"n": 2}


def test_a_stage_reruns_when_what_it_reads_from_an_earlier_stage_changes(tmp_path):
    chosen, calls = {}, []
    stages = [Stage("ppo", lambda config, out_dir: calls.append(dict(chosen)) or {}, ("model",),
                    derived_inputs=lambda config, workdir: dict(chosen))]
    for value in (None, None, 0.5, 0.5, -1.0):
        if value is not None:
            chosen["copy_penalty"] = value
        run_pipeline(stages, _config(), str(tmp_path))
    assert calls == [{}, {"copy_penalty": 0.5}, {"copy_penalty": -1.0}]
    record = json.loads((tmp_path / "ppo" / "stage.json").read_text())
    assert record["derived_inputs"] == {"copy_penalty": -1.0}
    # no derived inputs: the config's hash alone, as before the field existed
    assert config_hash(_config(), ("model",), derived={}) == config_hash(_config(), ("model",))


def test_a_stage_reading_an_earlier_run_reruns_when_that_run_is_replaced(tmp_path):
    # evaluate / report key their cache on the identity of the runs they read
    calls = []
    stages = [Stage("policy", lambda config, out_dir: {}, ("model",)),
              Stage("evaluate", lambda config, out_dir: calls.append(1) or {}, ("other",),
                    derived_inputs=lambda config, workdir: {
                        "policy": stage_identity(workdir, "policy")})]
    assert stage_identity(str(tmp_path), "policy") == []  # never ran
    run_pipeline(stages, _config(), str(tmp_path))
    first = stage_identity(str(tmp_path), "policy")
    assert first[0] == config_hash(_config(), ("model",)) and first[1] >= 0
    run_pipeline(stages, _config(), str(tmp_path))
    assert len(calls) == 1  # same policy run: evaluate cached
    run_pipeline(stages, _config(size=2), str(tmp_path))
    assert len(calls) == 2  # the policy reran: so does evaluate, though its own config did not


def test_evaluate_and_report_read_the_policy_runs(tmp_path):
    from experiments.configs import tiny
    from experiments.stages import evaluate_policies, registry

    config = tiny.get_config("debug")
    stages = {s.name: s for s in registry.STAGES}
    assert stages["report"].derived_inputs is registry.report_inputs

    def inputs():
        return (stages["evaluate"].derived_inputs(config, str(tmp_path)),
                registry.report_inputs(config, str(tmp_path)))

    before = inputs()
    assert set(before[0]["policy_runs"]) == set(config.evaluate.policies)
    (tmp_path / "ppo_world_model").mkdir()
    (tmp_path / "ppo_world_model" / "stage.json").write_text(
        json.dumps({"config_hash": "abc", "wall_time_s": 1.0}))
    after = inputs()
    assert after[1]["ppo_world_model"] == ["abc", 1.0] != before[1]["ppo_world_model"]
    changed = {k for k, v in after[0]["policy_runs"].items()
               if v != before[0]["policy_runs"][k]}
    assert changed == {"ppo_world_model"}  # only that policy's episodes run again
    assert evaluate_policies.run_ids(config, str(tmp_path), ["ppo_world_model"]) == {
        "ppo_world_model": after[0]["policy_runs"]["ppo_world_model"]}


def test_a_stage_its_config_turns_off_is_reported_as_skipped_not_done(tmp_path):
    stages = [Stage("off", lambda config, out_dir: {"skipped": 1.0}, ("model",))]
    for _ in range(2):  # the fresh record and the cached one read the same
        records = run_pipeline(stages, _config(), str(tmp_path))
        assert "| off | skipped (off in this config) | - |" in summary_table(records)


def test_training_stage_of_a_changed_config_starts_afresh_and_keeps_the_old_run(tmp_path):
    seen = []

    def train(config, out_dir):  # "resumes" from whatever checkpoint its folder holds
        ckpt = tmp_path / "train" / "ckpt"
        seen.append(ckpt.read_text() if ckpt.exists() else None)
        ckpt.write_text(f"size {config.model.size}")
        return {}

    stages = [Stage("train", train, ("model",), restart_on_change=True)]
    run_pipeline(stages, _config(), str(tmp_path))
    run_pipeline(stages, _config(size=2), str(tmp_path))
    assert seen == [None, None]  # the size-2 run did not resume the size-1 checkpoint
    old = tmp_path / f"train.replaced-{config_hash(_config(), ('model',))}"
    assert (old / "ckpt").read_text() == "size 1" and (old / "stage.json").exists()
    assert (tmp_path / "train" / "ckpt").read_text() == "size 2"


def test_hash_depends_only_on_declared_sections():
    a, b = _config(), _config()
    b.other.x = 2
    assert config_hash(a, ("model",)) == config_hash(b, ("model",))
    assert config_hash(a, ("other",)) != config_hash(b, ("other",))


def test_a_new_option_at_its_inert_default_keeps_the_hash():
    before = _config()
    after = _config()
    after.model.new_option = 0.0  # an option added later, at the value that changes nothing
    inert = {"model.new_option": 0.0, "absent.section.field": 1}
    assert config_hash(after, ("model",), inert) == config_hash(before, ("model",), inert)
    after.model.new_option = 0.5
    assert config_hash(after, ("model",), inert) != config_hash(before, ("model",), inert)
    assert after.model.new_option == 0.5  # the config itself is left untouched
    # a new section whose every option is at its inert default goes as a whole
    after.model.new_option = 0.0
    after.extra = ml_collections.ConfigDict({"inner": {"a": 1, "b": 2.0}})
    inert.update({"extra.inner.a": 1, "extra.inner.b": 2.0})
    assert config_hash(after, ("model", "extra"), inert) == config_hash(after, ("model",), inert)
    after.extra.inner.b = 3.0
    assert config_hash(after, ("model", "extra"), inert) != config_hash(after, ("model",), inert)


def test_inert_defaults_name_fields_the_tiny_config_has():
    from experiments.configs.tiny import get_config
    from experiments.pipeline import INERT_DEFAULTS

    config = get_config()
    for path, value in INERT_DEFAULTS.items():  # a renamed or misspelt path would never match
        node = config
        for name in path.split("."):
            assert name in node, path
            node = node[name]
        assert type(node) is type(value), path


def test_failed_stage_leaves_no_marker_and_reruns(tmp_path):
    def broken(config, out_dir):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_pipeline([Stage("s", broken)], _config(), str(tmp_path))
    assert not (tmp_path / "s" / "stage.json").exists()


def test_main_launcher_debug_run(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "experiments.main",
        "--only=simulator_check",
        "--config=experiments/configs/tiny.py:debug",
        f"--workdir={tmp_path}",
    ]
    out = subprocess.run(
        cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "| simulator_check | done |" in out.stdout
    assert "collect_data" not in out.stdout
    assert (tmp_path / "simulator_check" / "frames.png").exists()
    for name in ("config.json", "run_info.json", "pipeline_summary.json"):
        assert (tmp_path / name).exists()
    rerun = subprocess.run(
        cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )
    assert "| simulator_check | cached |" in rerun.stdout


def test_main_launcher_rejects_unknown_stage(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.main",
            "--only=colect_data",
            "--config=experiments/configs/tiny.py",
            f"--workdir={tmp_path}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and "unknown stage(s) ['colect_data']" in out.stderr


def test_main_launcher_rejects_unknown_override(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.main",
            "--config=experiments/configs/tiny.py",
            f"--workdir={tmp_path}",
            "--config.simulator.colour=red",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "unknown config field 'colour'" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "pipeline_summary.json").exists()
