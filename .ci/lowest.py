"""The floors that ``make test-lowest`` installs and checks, read from pyproject.toml.

``python .ci/lowest.py overrides`` prints the requirements sfauth declares for its runtime and its
``redis``, ``testing``, ``otel``, ``prometheus`` and ``pkcs11`` extras, one a line, for
``uv pip install --override``: with ``--resolution lowest-direct`` each then resolves to its
floor, even where a pinned test tool asks for more (joserfc 1.8 requires cryptography >=
45.0.1; the ``dev`` extra pins redis and the OpenTelemetry SDK), plus the test tools that must
pair with a floor (``PAIRED``).

``python .ci/lowest.py check`` prints, for each of those requirements, its floor and the version
installed, and exits 1 unless every installed version is its floor: a run that passes then
proves the floors, not whatever the resolver preferred.
"""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
EXTRAS = ("redis", "testing", "otel", "prometheus", "pkcs11")
#: Test tools released in lockstep with a floor above: pinned to the release that pairs with it
#: (``overrides`` only; they are not floors of sfauth's).
PAIRED = ("opentelemetry-instrumentation-aiohttp-client==0.48b0",)


def declared() -> list[str]:
    """The runtime requirements and those of ``EXTRAS``, as written in pyproject.toml."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    requirements: list[str] = list(project["dependencies"])
    for extra in EXTRAS:
        requirements += project["optional-dependencies"][extra]
    return requirements


def check() -> int:
    """Compare each declared floor with the installed version; 0 if all are the floors."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    failures = 0
    for text in declared():
        requirement = Requirement(text)
        floors = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            installed = "missing"
        ok = (
            len(floors) == 1
            and installed != "missing"
            and Version(installed) == Version(floors[0])
        )
        failures += not ok
        print(
            f"lowest: {requirement.name:<14} floor {floors[0] if floors else '?':<8} "
            f"installed {installed:<10} {'ok' if ok else 'NOT THE FLOOR'}"
        )
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    """Run the command named by ``argv[0]``: ``overrides`` or ``check``."""
    if argv == ["overrides"]:
        print("\n".join([*declared(), *PAIRED]))
        return 0
    if argv == ["check"]:
        return check()
    print("usage: lowest.py overrides|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
