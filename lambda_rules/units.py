"""Distribution units: what a package holds of third-party code, one unit per locked wheel.

A unit is one wheel's files as the package holds them (`wheel_units.lay_out`, minus what a
package never holds). Each unit is compressed on its own, in a process whose only input is that
unit, so every function, layer and CI machine that pins the same wheel shares one cached part
instead of compressing the wheel again.

Standard library only: the wheel step runs it in a sandbox, and the Pants rules import it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable

# How a resolve hands its units on (`wheel_units.write_units`): `units.json` lists each unit
# ({"distribution": [name, version], "paths": [...], "size": bytes, "sha256": of its stored
# archive}); unit i's files are the
# stored archive `<i>.zip` as pieces (`pieces.py`); every `*.dist-info/METADATA` and `WHEEL` is
# also under `dist-info/`, for the plan and the SBOM.
UNITS_JSON = "units.json"
METADATA_DIR = "dist-info"

# Build and install tooling that a deployed function never imports: pip, setuptools (with its
# pkg_resources and distutils shim) and wheel, plus console scripts and bytecode caches.
_UNWANTED_TOP_LEVEL = re.compile(
    r"^(pip|setuptools|pkg_resources|_distutils_hack|wheel|bin)(/|$)"
    r"|^(pip|setuptools|wheel)-[^/]+\.dist-info(/|$)"
    r"|^distutils-precedence\.pth$"
)
_DIST_INFO_DIR = re.compile(r"^(?P<name>[^/]+)-(?P<version>[^/-]+)\.dist-info/")
# PEP 503's normalization, as `packaging.utils.canonicalize_name` applies it; written out here
# because this module runs where `packaging` is not installed (tests/test_units.py compares the
# two).
_NAME_SEPARATORS = re.compile(r"[-_.]+")


def canonical_name(name: str) -> str:
    """A distribution name as PyPI and pip spell it (PEP 503)."""
    return _NAME_SEPARATORS.sub("-", name).lower()


@dataclass(frozen=True)
class Distribution:
    """An installed distribution; `name` is canonical (PEP 503), as PyPI and pip spell it."""

    name: str
    version: str


def is_bundled_distribution_path(path: str) -> bool:
    """Whether a path of the flat site-packages belongs in the deployment package."""
    if _UNWANTED_TOP_LEVEL.search(path):
        return False
    parts = path.split("/")
    return "__pycache__" not in parts and not path.endswith((".pyc", ".pyo"))


def distributions(paths: Iterable[str]) -> tuple[Distribution, ...]:
    """The distributions installed in a flat site-packages, from their `.dist-info` directories.

    Directory names escape `-` as `_` (`python_dateutil-2.9.0.dist-info`), so the name is
    canonicalized back to what a requirement or PyPI shows (`python-dateutil`).
    """
    found = set()
    for path in paths:
        match = _DIST_INFO_DIR.match(path)
        if match:
            found.add(Distribution(canonical_name(match["name"]), match["version"]))
    return tuple(sorted(found, key=lambda d: (d.name, d.version)))


@dataclass(frozen=True)
class UnitPlan:
    """The package paths of one unit: one distribution's files."""

    distribution: Distribution
    paths: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.distribution.name} {self.distribution.version}"


@dataclass(frozen=True)
class ListedUnit:
    """A unit as `UNITS_JSON` lists it: its plan, its unpacked size and the sha256 of its stored
    archive (which decides the part's bytes, with the prefix and the compressor)."""

    plan: UnitPlan
    size: int
    sha256: str


@dataclass(frozen=True)
class SplitDistributions:
    """A resolve's files that go into packages, and its distributions split into units."""

    bundled: tuple[str, ...]
    units: tuple[UnitPlan, ...]


def read_listing(listing: bytes) -> tuple[ListedUnit, ...]:
    """The units of a `UNITS_JSON` document, in its order (unit i's archive is `<i>.zip`)."""
    return tuple(
        ListedUnit(
            UnitPlan(Distribution(*unit["distribution"]), tuple(unit["paths"])),
            unit["size"],
            unit["sha256"],
        )
        for unit in json.loads(listing)["units"]
    )


def split_of(listed: Iterable[ListedUnit]) -> SplitDistributions:
    plans = tuple(unit.plan for unit in listed)
    return SplitDistributions(tuple(sorted(p for plan in plans for p in plan.paths)), plans)
