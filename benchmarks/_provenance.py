"""Where a benchmark or soak figure comes from: the machine and the git revision."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def machine(packages: Iterable[str]) -> dict[str, str]:
    """CPU model and count, memory, OS, Python and the versions of ``packages``."""
    cpu = platform.processor() or platform.machine()
    memory = "memory unknown"
    try:
        with open("/proc/cpuinfo") as file:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in file if line.startswith("model name")),
                cpu,
            )
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemTotal"):
                    memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                    break
    except OSError:
        pass
    versions = []
    for name in packages:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return {
        "cpu": f"{cpu}, {os.cpu_count()} logical CPUs",
        "memory": memory,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": ", ".join(versions),
    }


def revision(*outputs: Path) -> str:
    """``git <short HEAD>``, plus ``-dirty`` when the work tree has changes.

    ``outputs`` (the files the run itself writes) do not count as changes. Read-only: git runs
    with ``--no-optional-locks``, so it does not even refresh the index.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()

    spec = ["--", ":/"]
    for output in outputs:
        with contextlib.suppress(ValueError):  # a file outside the checkout changes nothing
            spec.append(f":(top,exclude){output.resolve().relative_to(REPO)}")
    try:
        head = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", *spec)
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"git {head}" + ("-dirty (uncommitted changes in the work tree)" if dirty else "")
