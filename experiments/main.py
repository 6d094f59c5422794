"""The main job: the RoboScape-R pipeline, stage by stage, into one workdir.

  python -m experiments.main --config=experiments/configs/tiny.py --workdir=runs/tiny

Stages are skipped when their output for the same config exists; stages not built yet are listed
as missing with the issue that tracks them. On a CPU host the launcher splits the CPU into one
XLA device per core (`--cpu_devices`), so the trainers run data-parallel over the cores.
"""

import os

from experiments.cpu_devices import cpu_devices_from_argv

DEFAULT_CPU_DEVICES = os.cpu_count() or 1
cpu_devices_from_argv(DEFAULT_CPU_DEVICES)  # before any import starts JAX's backend

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from experiments.launch import define_cpu_devices_flag, parse_flags  # noqa: E402
from experiments.pipeline import run_pipeline  # noqa: E402
from experiments.stages.registry import STAGES  # noqa: E402
from roboscape_jax.utils.provenance import write_run_provenance  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Pipeline config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for every stage's outputs.")
_ONLY = flags.DEFINE_list("only", None, "Run only these stages (names as in the summary table).")
_CPU_DEVICES = define_cpu_devices_flag(DEFAULT_CPU_DEVICES)  # per trainer: parallel.devices
flags.mark_flags_as_required(["config", "workdir"])


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
