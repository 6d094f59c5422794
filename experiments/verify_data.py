"""Planner success and open-loop replay success of the action labels, per task.

python -m experiments.verify_data --staging=runs/tiny/collect_data/staging
"""

import json

from absl import app, flags

_STAGING = flags.DEFINE_string("staging", None, "The collector's staging folder.")
_CONTROL_FREQ = flags.DEFINE_integer("control_freq", 10, "Control frequency of the data (Hz).")
_LIMIT = flags.DEFINE_integer("limit", None, "Replay at most this many episodes.")
flags.mark_flags_as_required(["staging"])


def main(argv):
    del argv
    from data_pipeline.verify import planner_success, replay_staged

    print("planner success (optimal plans):")
    print(json.dumps(planner_success(_STAGING.value), indent=1))
    print("open-loop replay of recorded delta-EE actions:")
    print(
        json.dumps(
            replay_staged(_STAGING.value, control_freq=_CONTROL_FREQ.value, limit=_LIMIT.value),
            indent=1,
        )
    )


if __name__ == "__main__":
    app.run(main)
