"""Distribution units: names, and the listing the wheel step hands on."""

from __future__ import annotations

import subprocess
import sys

import pytest
from packaging.utils import canonicalize_name

from lambda_rules.units import canonical_name
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize(
    "name", ["python_dateutil", "Flask", "zope.interface", "ruamel.yaml.clib", "A__b--C..d"]
)
def test_canonical_name_is_packagings(name):
    """`units` runs where `packaging` is not installed, so it writes PEP 503 out: the same."""
    assert canonical_name(name) == canonicalize_name(name)


def test_units_imports_the_standard_library_only():
    """The Pants rules import it, and the wheel step's sandbox holds nothing else of ours."""
    program = f"import sys; sys.path[:0] = [{str(REPO_ROOT)!r}]; import lambda_rules.units"
    subprocess.run([sys.executable, "-I", "-S", "-c", program], check=True)
