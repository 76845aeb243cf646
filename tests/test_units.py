"""Splitting a flat site-packages into distribution units by their RECORD files."""

from __future__ import annotations

import subprocess
import sys

import pytest
from packaging.utils import canonicalize_name

from lambda_rules.units import Distribution, canonical_name, record_paths, split_into_units
from tests.conftest import REPO_ROOT

NUMPY_RECORD = b"""numpy/__init__.py,sha256=abc,10
numpy/core/_multiarray.so,sha256=def,20
numpy-2.2.0.dist-info/METADATA,sha256=ghi,30
numpy-2.2.0.dist-info/RECORD,,
../../bin/f2py,sha256=jkl,40
numpy/__pycache__/__init__.cpython-312.pyc,,
"""
SIX_RECORD = b'six.py,sha256=x,1\nsix-1.16.0.dist-info/RECORD,,\n"six-1.16.0.dist-info/a,b",,\n'


def test_record_paths_are_relative_to_the_site_packages_root():
    assert record_paths("numpy-2.2.0.dist-info/RECORD", NUMPY_RECORD) == [
        "numpy/__init__.py",
        "numpy/core/_multiarray.so",
        "numpy-2.2.0.dist-info/METADATA",
        "numpy-2.2.0.dist-info/RECORD",
        "../../bin/f2py",
        "numpy/__pycache__/__init__.cpython-312.pyc",
    ]
    # CSV quoting: a path with a comma.
    assert "six-1.16.0.dist-info/a,b" in record_paths("six-1.16.0.dist-info/RECORD", SIX_RECORD)


def test_each_distribution_is_one_unit_of_its_bundled_files_only():
    bundled = [
        "numpy/__init__.py",
        "numpy/core/_multiarray.so",
        "numpy-2.2.0.dist-info/METADATA",
        "numpy-2.2.0.dist-info/RECORD",
        "six.py",
        "six-1.16.0.dist-info/RECORD",
        "six-1.16.0.dist-info/a,b",
    ]
    records = {
        "six-1.16.0.dist-info/RECORD": SIX_RECORD,
        "numpy-2.2.0.dist-info/RECORD": NUMPY_RECORD,
    }
    units = split_into_units(bundled, records)
    assert [(u.distribution, u.paths) for u in units] == [
        (
            Distribution("numpy", "2.2.0"),
            (
                "numpy-2.2.0.dist-info/METADATA",
                "numpy-2.2.0.dist-info/RECORD",
                "numpy/__init__.py",
                "numpy/core/_multiarray.so",
            ),
        ),
        (
            Distribution("six", "1.16.0"),
            ("six-1.16.0.dist-info/RECORD", "six-1.16.0.dist-info/a,b", "six.py"),
        ),
    ]
    # The same split whatever order the inputs come in.
    assert split_into_units(reversed(bundled), dict(reversed(list(records.items())))) == units


def test_a_path_two_records_claim_goes_to_the_first_distribution_and_unclaimed_files_last():
    shared = b"google/__init__.py,,\n"
    records = {
        "protobuf-5.0.dist-info/RECORD": shared + b"google/protobuf/x.py,,\n",
        "googleapis_common_protos-1.0.dist-info/RECORD": shared + b"google/api/y.py,,\n",
    }
    bundled = [
        "google/__init__.py",
        "google/protobuf/x.py",
        "google/api/y.py",
        "protobuf-5.0.dist-info/RECORD",
        "googleapis_common_protos-1.0.dist-info/RECORD",
        "stray.pth",
    ]
    units = split_into_units(bundled, records)
    assert [u.label for u in units] == [
        "googleapis-common-protos 1.0",
        "protobuf 5.0",
        "files of no distribution",
    ]
    assert "google/__init__.py" in units[0].paths
    assert "google/__init__.py" not in units[1].paths
    assert units[2].paths == ("stray.pth",)
    every_path = [p for u in units for p in u.paths]
    assert sorted(every_path) == sorted(bundled)


@pytest.mark.parametrize(
    "name", ["python_dateutil", "Flask", "zope.interface", "ruamel.yaml.clib", "A__b--C..d"]
)
def test_canonical_name_is_packagings(name):
    """`units` runs where `packaging` is not installed, so it writes PEP 503 out: the same."""
    assert canonical_name(name) == canonicalize_name(name)


def test_units_imports_the_standard_library_only():
    """The resolve's process splits with it, on an interpreter that has nothing else."""
    program = f"import sys; sys.path[:0] = [{str(REPO_ROOT)!r}]; import lambda_rules.units"
    subprocess.run([sys.executable, "-I", "-S", "-c", program], check=True)
