"""ManiSkill3 renders third-view and wrist RGB on the CPU; a missing Vulkan driver is explained."""

import os
import subprocess
import sys

import numpy as np
import pytest

from data_pipeline import rendering
from data_pipeline.simulator_check import camera_frames, is_blank
from tests.conftest import REPO_ROOT


def test_third_view_and_wrist_frames_are_rendered():
    env = rendering.make_render_env("PushCube-v1", image_size=64, wrist_camera=True)
    try:
        obs, _ = env.reset(seed=0)
        frames = camera_frames(obs)
        obs, *_ = env.step(np.zeros(env.action_space.shape, np.float32))
        after = camera_frames(obs)
    finally:
        env.close()
    assert set(frames) == {"base_camera", "hand_camera"}  # third view, wrist
    for name, frame in {**frames, **{n + "_after": f for n, f in after.items()}}.items():
        assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8, name
        assert not is_blank(frame), f"{name} is blank (std {frame.std():.2f})"
    assert not np.array_equal(frames["base_camera"], frames["hand_camera"])


def test_blank_detector():
    assert is_blank(np.full((8, 8, 3), 17, np.uint8))
    assert not is_blank(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8))


def test_missing_icd_file_named_with_setup_hint(monkeypatch):
    monkeypatch.setenv("VK_ICD_FILENAMES", "/nonexistent/lvp_icd.json")
    with pytest.raises(
        rendering.VulkanDriverError, match=r"does not exist.*/nonexistent/lvp_icd.json.*make setup"
    ):
        rendering.make_render_env("PushCube-v1")


def test_missing_project_driver_named_with_setup_hint(monkeypatch, tmp_path):
    monkeypatch.delenv("VK_ICD_FILENAMES", raising=False)
    monkeypatch.setenv("ROBOSCAPE_VULKAN_DIR", str(tmp_path))
    with pytest.raises(
        rendering.VulkanDriverError,
        match=r"software Vulkan driver is missing.*lvp_icd.json.*make setup",
    ):
        rendering.configure_vulkan()


def test_unusable_driver_in_a_fresh_process_is_explained(tmp_path):
    """An ICD file that exists but names no real driver: SAPIEN's own error is wrapped."""
    icd = tmp_path / "broken_icd.json"
    icd.write_text(
        '{"file_format_version": "1.0.0", "ICD": {"library_path": "/nonexistent.so",'
        ' "api_version": "1.3.0"}}'
    )
    code = "from data_pipeline.rendering import make_render_env\nmake_render_env('PushCube-v1')\n"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "VK_ICD_FILENAMES": str(icd)},
    )
    assert out.returncode != 0
    assert "VulkanDriverError" in out.stderr and "make setup" in out.stderr, out.stderr[-2000:]
