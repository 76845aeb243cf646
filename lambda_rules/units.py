"""Splitting resolved third-party code into distribution units.

A unit is one distribution's files (as its `*.dist-info/RECORD` lists them, minus what staging
drops). Each unit is compressed on its own, in a process whose only inputs are that unit's files,
so every function, layer and CI machine that resolves the same wheel for the same platform shares
one cached part instead of compressing the wheel again.
"""

from __future__ import annotations

import csv
import io
import posixpath
from dataclasses import dataclass
from typing import Iterable, Mapping

from lambda_rules.staging import Distribution, distributions


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
