"""What a result carries besides its numbers: versions, commit and hardware."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

__all__ = ["cpu_model", "git_commit", "hardware", "versions"]

_PACKAGES = ("sparsebench", "torch", "torchvision", "numpy", "scipy", "torchattacks", "robustbench", "adv-lib")


def versions() -> dict[str, str | None]:
    """Versions of Python, the project and each library a result may depend on (None: not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


COMMIT_ENV = "SPARSEBENCH_GIT_COMMIT"


def git_commit() -> str | None:
    """The project's git commit, with ``+dirty.<hash of the changes>`` when the tree has uncommitted changes.

    The hash tells two dirty trees apart: a run refuses to resume on different code, dirty or not.

    A tree that is not a git checkout (a copy sent to a GPU machine, an
    unpacked sdist) says which commit it is through ``$SPARSEBENCH_GIT_COMMIT``.
    """
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        diff = subprocess.run(["git", "diff", "HEAD"], cwd=root, capture_output=True, check=True,
                              timeout=30).stdout if dirty else b""
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + (f"+dirty.{hashlib.sha256(diff).hexdigest()[:8]}" if dirty else "")


def cpu_model() -> str | None:
    """The CPU's model name (Linux: ``/proc/cpuinfo``), None where it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return None


def hardware(device: torch.device) -> dict[str, Any]:
    """The machine and the device a run measured on."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(
            gpu=properties.name,
            gpu_memory_bytes=properties.total_memory,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
        try:
            info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            info["driver"] = None
    return info
