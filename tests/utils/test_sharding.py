"""FSDP placement rules and the single-process identities of the multi-host helpers."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from roboscape_jax.utils import sharding


def test_fsdp_splits_the_largest_divisible_axis_of_large_leaves():
    spec = sharding.fsdp_spec
    assert spec((512, 2048), 4, min_size=1) == PartitionSpec(None, "data")
    assert spec((6, 512), 4, min_size=1) == PartitionSpec(None, "data")
    assert spec((10, 7), 4, min_size=1) == PartitionSpec()  # nothing divides: replicated
    assert spec((512, 512), 4, min_size=10**6) == PartitionSpec()  # small: replicated
    assert spec((512, 512), 1, min_size=1) == PartitionSpec()  # one device
    assert spec((), 4, min_size=0) == PartitionSpec()  # scalars (step counters)


def test_single_process_helpers_are_identities():
    mesh = sharding.data_mesh()
    batch = {"x": np.arange(8.0).reshape(4, 2)}
    assert sharding.global_batch(batch, mesh) is batch
    tree = {"w": np.ones(3)}
    assert sharding.host_local(tree) is tree
    assert sharding.is_primary() and sharding.process_dir("/w") == "/w"
    placed, shardings = sharding.place_parallel_state({"w": np.ones((64, 512))}, mesh,
                                                      {"fsdp": True, "fsdp_min_size": 1})
    np.testing.assert_array_equal(np.asarray(placed["w"]), 1.0)
    assert shardings["w"].spec == sharding.fsdp_spec((64, 512), mesh.size, 1)


def test_parallel_mesh_takes_the_first_devices_and_names_a_bad_count():
    count = len(jax.devices())
    assert sharding.parallel_mesh(None).size == count
    assert sharding.parallel_mesh({"fsdp": False}).size == count  # no num_devices: all
    assert sharding.parallel_mesh({"num_devices": 1}).devices.tolist() == jax.devices()[:1]
    with pytest.raises(ValueError, match=f"num_devices={count + 1}.*{count} device"):
        sharding.parallel_mesh({"num_devices": count + 1})


def test_pipeline_gives_each_trainer_its_device_count():
    from experiments.configs.tiny import get_config
    from experiments.stages import trainer_parallel

    config = get_config()
    config.parallel.devices.world_models = 2
    assert trainer_parallel(config, "world_models") == {
        "fsdp": False, "fsdp_min_size": config.parallel.fsdp_min_size, "num_devices": 2}
    assert trainer_parallel(config, "tokenizer")["num_devices"] == 1  # tiny: batch 8 whole


def test_launcher_rejects_a_partial_multi_host_flag_set():
    from absl import flags

    from experiments import launch

    saved = flags.FLAGS["coordinator_address"].value
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    flags.FLAGS["coordinator_address"].value = "localhost:1234"
    try:
        with pytest.raises(flags.ValidationError, match="missing --num_processes, --process_id"):
            launch.initialize_distributed()
    finally:
        flags.FLAGS["coordinator_address"].value = saved
    assert jax.process_count() == 1
