"""Splitting resolved third-party code into distribution units.

A unit is one distribution's files (as its `*.dist-info/RECORD` lists them, minus what a package
never holds). Each unit is compressed on its own, in a process whose only input is that unit, so
every function, layer and CI machine that resolves the same wheel for the same platform shares
one cached part instead of compressing the wheel again.

Standard library only: the Pants rules split a resolve inside the process that lays it out (see
`scripts/pack_units.py`), on the interpreter pex runs on, where nothing else is installed.
"""

from __future__ import annotations

import csv
import io
import posixpath
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

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
    """The package paths of one unit; `distribution` is None for files no RECORD claims."""

    distribution: Distribution | None
    paths: tuple[str, ...]

    @property
    def label(self) -> str:
        if self.distribution is None:
            return "files of no distribution"
        return f"{self.distribution.name} {self.distribution.version}"


def record_paths(record_path: str, record: bytes) -> list[str]:
    """The files a RECORD lists, relative to the site-packages root it sits in."""
    site_packages_root = posixpath.dirname(posixpath.dirname(record_path))
    rows = csv.reader(io.StringIO(record.decode("utf-8")))
    return [
        posixpath.normpath(posixpath.join(site_packages_root, row[0]))
        for row in rows
        if row and row[0]
    ]


def split_into_units(paths: Iterable[str], records: Mapping[str, bytes]) -> tuple[UnitPlan, ...]:
    """One unit per distribution, by RECORD, over the bundled `paths` only.

    A path two RECORDs claim (a namespace `__init__.py` both ship) goes to the first distribution
    in name order, so the split is deterministic; a path no RECORD claims goes to a last unit.
    """
    remaining = set(paths)
    units = []
    by_distribution = sorted(
        ((distributions([record_path])[0], record_path) for record_path in records),
        key=lambda pair: (pair[0].name, pair[0].version),
    )
    for distribution, record_path in by_distribution:
        claimed = remaining.intersection(
            [record_path, *record_paths(record_path, records[record_path])]
        )
        remaining -= claimed
        if claimed:
            units.append(UnitPlan(distribution, tuple(sorted(claimed))))
    if remaining:
        units.append(UnitPlan(None, tuple(sorted(remaining))))
    return tuple(units)


@dataclass(frozen=True)
class SplitDistributions:
    """A resolve's files that go into packages, and its distributions split into units."""

    bundled: tuple[str, ...]
    units: tuple[UnitPlan, ...]


def split_distributions(
    distribution_files: Iterable[str], records: Mapping[str, bytes]
) -> SplitDistributions:
    """Leave out pip, setuptools, console scripts and `__pycache__`, and split the rest into one
    unit per distribution by their RECORDs (`records`: each `*.dist-info/RECORD` path of the
    resolve -> its content)."""
    bundled = sorted(p for p in distribution_files if is_bundled_distribution_path(p))
    return SplitDistributions(tuple(bundled), split_into_units(bundled, records))
