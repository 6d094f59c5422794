"""`--cpu_devices` read from argv into XLA_FLAGS before JAX starts (experiments/cpu_devices.py)."""

import os

import pytest

from experiments.cpu_devices import cpu_devices_from_argv


def test_sets_the_device_count_first_and_replaces_an_old_one(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_cpu_x=1")
    assert cpu_devices_from_argv(1, ["--seeds=4", "--cpu_devices=3", "--cpu_devices=2"]) == 2
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2 --xla_cpu_x=1"


def test_default_of_one_leaves_xla_flags_alone(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_x=1")
    assert cpu_devices_from_argv(1, ["--seeds=4"]) == 1
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_x=1"


def test_without_the_flag_a_count_in_xla_flags_wins_over_the_default(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
    assert cpu_devices_from_argv(2, ["--seeds=4"]) == 4
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=4"


@pytest.mark.parametrize("arg, match", [("--cpu_devices=two", "integer"),
                                        ("--cpu_devices=0", ">= 1")])
def test_bad_values_name_the_flag(monkeypatch, arg, match):
    monkeypatch.setenv("XLA_FLAGS", "")
    with pytest.raises(ValueError, match=f"--cpu_devices.*{match}"):
        cpu_devices_from_argv(1, [arg])
