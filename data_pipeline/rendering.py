"""Points SAPIEN (ManiSkill3's renderer) at the project's software Vulkan driver; makes envs.

SAPIEN needs Vulkan even on a CPU. Debian 12's own lavapipe is too old, so setup
(`scripts/install_vulkan.sh`) unpacks Mesa >= 24.3 lavapipe into `.cache/vulkan`. This module sets
`VK_ICD_FILENAMES` to it and preloads the newer libdrm it links against, before the Vulkan loader
starts; the user's shell needs nothing. A missing driver becomes `VulkanDriverError` that says what
is missing and how to install it, instead of SAPIEN's bare `ErrorIncompatibleDriver`.

Nothing here is imported by `roboscape_jax`: the JAX library runs where ManiSkill is not installed.
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_VULKAN_DIR = os.path.join(REPO_ROOT, ".cache", "vulkan")
DEFAULT_ASSET_DIR = os.path.join(REPO_ROOT, ".cache", "maniskill_assets")
SETUP_HINT = (
    "`make setup` installs it (scripts/install_vulkan.sh .cache/vulkan fetches Mesa "
    "lavapipe from Debian bookworm-backports into the project cache)"
)
_PRELOAD = ("libdrm.so.2", "libdrm_amdgpu.so.1")


class VulkanDriverError(RuntimeError):
    """The software Vulkan driver SAPIEN needs to render is missing or unusable."""


def _lib_dir(vulkan_dir: str) -> str:
    return os.path.join(vulkan_dir, "root", "usr", "lib", f"{platform.machine()}-linux-gnu")


def configure_vulkan(vulkan_dir: str | None = None) -> str:
    """Makes SAPIEN use lavapipe; returns the ICD file in use.

    An explicit `VK_ICD_FILENAMES` in the environment is respected but must name an existing file.
    Otherwise `vulkan_dir` (default `$ROBOSCAPE_VULKAN_DIR` or `<repo>/.cache/vulkan`) must hold the
    driver that setup installs.

    Raises:
      VulkanDriverError: when the ICD file or the driver library does not exist.
    """
    os.environ.setdefault("MS_ASSET_DIR", DEFAULT_ASSET_DIR)  # never prompt to download into ~
    vulkan_dir = vulkan_dir or os.environ.get("ROBOSCAPE_VULKAN_DIR", DEFAULT_VULKAN_DIR)
    icd = os.environ.get("VK_ICD_FILENAMES")
    if icd:
        missing = [p for p in icd.split(os.pathsep) if not os.path.isfile(p)]
        if missing:
            raise VulkanDriverError(
                f"VK_ICD_FILENAMES names a Vulkan driver file that does not exist: {missing}. "
                f"SAPIEN needs a Vulkan driver to render on a CPU; unset VK_ICD_FILENAMES to use "
                f"the project's lavapipe in {vulkan_dir}; {SETUP_HINT}."
            )
    else:
        icd = os.path.join(vulkan_dir, "lvp_icd.json")
        if not os.path.isfile(icd):
            raise VulkanDriverError(
                f"the software Vulkan driver is missing: no {icd}. SAPIEN needs Mesa >= 24.3 "
                f"lavapipe to render on a CPU; {SETUP_HINT}."
            )
        os.environ["VK_ICD_FILENAMES"] = icd
    lib_dir = _lib_dir(vulkan_dir)
    for name in _PRELOAD:
        path = os.path.join(lib_dir, name)
        if os.path.isfile(path):  # the dynamic loader reuses an already-loaded soname
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    return icd


def make_render_env(env_id: str, *, image_size: int = 64, wrist_camera: bool = True, **kwargs: Any):
    """`gym.make` of a ManiSkill3 env with RGB observations from the third-view (and wrist) camera.

    Raises:
      VulkanDriverError: when the driver is missing or SAPIEN cannot create a Vulkan device.
    """
    configure_vulkan()
    import gymnasium as gym
    import mani_skill.envs  # noqa: F401  (registers the environments)

    options = dict(
        obs_mode="rgb", num_envs=1, sensor_configs=dict(width=image_size, height=image_size)
    )
    if wrist_camera:
        options["robot_uids"] = "panda_wristcam"
    options.update(kwargs)
    try:
        return gym.make(env_id, **options)
    except RuntimeError as err:
        if "vk::" in str(err) or "Vulkan" in str(err) or "physical device" in str(err):
            raise VulkanDriverError(
                f"SAPIEN could not start Vulkan with {os.environ.get('VK_ICD_FILENAMES')}: {err}. "
                f"It needs Mesa >= 24.3 lavapipe; {SETUP_HINT}."
            ) from err
        raise
