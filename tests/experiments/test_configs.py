"""Config files load, `--config.x=v` overrides apply, and bad overrides fail with a clear error."""

import os

import pytest
from absl import flags
from ml_collections import config_flags

from experiments.configs import common
from roboscape_jax.tokenizer.model import create_model
from tests.conftest import REPO_ROOT

CONFIGS = os.path.join(REPO_ROOT, "experiments", "configs")


def _parse(*args):
    argv = ["prog", *args]
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, "config", flag_values=flag_values, lock_config=True, sys_argv=argv
    )
    flag_values(argv)
    return flag_values.config


@pytest.mark.parametrize("variant", ["tiny", "base", "paper"])
def test_variants_load(variant):
    config = _parse(f"--config={CONFIGS}/{variant}.py")
    assert config.variant == variant
    assert set(config.simulator.tasks) <= set(common.PAPER_TASKS)


@pytest.mark.parametrize("variant", ["tiny", "tiny:debug", "base", "paper"])
def test_world_models_read_the_tokenizers_codes(variant):
    config = _parse(f"--config={CONFIGS}/{variant.split(':')[0]}.py" + (":debug" if ":" in variant
                                                                         else ""))
    tok = config.tokenizer
    down = create_model(tok.model).downsample_factor
    for control in ("action", "text"):
        wm = config.world_models[control].model
        assert wm.num_bits == tok.model.num_bits, (variant, control)
        assert wm.num_bits % wm.num_factors == 0
        grid = (tok.input.frame_height // down, tok.input.frame_width // down)
        assert (wm.grid_height, wm.grid_width) == grid, (variant, control)


def test_override_and_config_arg_apply():
    config = _parse(
        f"--config={CONFIGS}/tiny.py:debug", "--config.simulator.image_size=96", "--config.seed=3"
    )
    assert (config.variant, config.simulator.image_size, config.seed) == ("tiny:debug", 96, 3)


def test_unknown_field_fails_naming_it():
    with pytest.raises(Exception, match="no_such_field"):
        _parse(f"--config={CONFIGS}/tiny.py", "--config.simulator.no_such_field=1")


def test_malformed_value_fails_naming_the_flag():
    with pytest.raises(flags.IllegalFlagValueError, match="image_size"):
        _parse(f"--config={CONFIGS}/tiny.py", "--config.simulator.image_size=big")


def test_unknown_config_arg_fails():
    with pytest.raises(flags.IllegalFlagValueError, match="unknown config arg 'fast'"):
        _parse(f"--config={CONFIGS}/tiny.py:fast")


def test_parse_arg_types_and_flags():
    arg = common.parse_arg("debug,size=3,name=x", debug=False, size=1, name="a")
    assert (arg.debug, arg.size, arg.name) == (True, 3, "x")
    with pytest.raises(ValueError, match="needs a value"):
        common.parse_arg("size", size=1)
