"""Resolve requirements from a lockfile for one Lambda platform with pex, without Pants.

The same `pex3 venv create --layout flat` the Pants rules run (steps/resolve.py), with the same
pex version (`PEX_REQUIREMENT`, pinned with Pants' in ./pants) and the same complete platform, so
both front ends stage the same files. Wheels only: building an sdist would run its code here and
could give a wheel for this machine instead of for Lambda. No Pants imports.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from lambda_rules import lockfile, staging
from lambda_rules.platforms import LambdaPlatform

# The pex the Pants rules run (./pants bootstraps the same version): the flat layout it writes is
# what gets staged, so both front ends must use one version.
PEX_REQUIREMENT = "pex==2.105.2"
# A pex PEX to run instead of the installed pex (the Pants rules hand theirs to `verify`).
PEX_PEX_VARIABLE = "LAMBDA_ZIP_PEX"
# Where a CA bundle may be configured; pex's pip reads no pip configuration (see below), so a
# bundle a proxy needs reaches it as --cert. It does not change what is installed.
_CA_BUNDLE_VARIABLES = ("LAMBDA_ZIP_CA_CERTS", "PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
_NOT_IN_LOCK = re.compile(r"Dependency on (?P<name>\S+) \(via: [^)]*\) not satisfied")


def resolve_distributions(
    *,
    what: str,
    platform: LambdaPlatform,
    requirements: Sequence[str],
    lock: Path,
    dest: Path,
    transitive: bool = True,
) -> None:
    """Install the locked wheels that `requirements` need on `platform` into `dest`, flat (as
    `pip install --target` lays them out); with `transitive` False, exactly the distributions
    named (pinned `name==version`), without their dependencies. Raises `staging.ResolveError`
    with one line that says what to do."""
    if not os.environ.get(PEX_PEX_VARIABLE) and importlib.util.find_spec("pex") is None:
        raise staging.ResolveError(
            f"{what}: resolving requirements needs pex; install lambda-rules with its `package` "
            f"extra (`pip install 'lambda-rules[package]'`, which pins {PEX_REQUIREMENT})"
        )
    with tempfile.TemporaryDirectory(prefix="lambda-zip-resolve-") as scratch:
        platform_file = Path(scratch, "platform.json")
        platform_file.write_text(platform.complete_platform_json(), encoding="utf-8")
        lock_file = Path(scratch, "lock.json")
        lock_file.write_text(lockfile.lock_json(lock), encoding="utf-8")
        argv = [
            *_pex_command(),
            "venv",
            "create",
            *_certificate_args(),
            f"--dest-dir={dest}",
            "--layout=flat",
            "--no-build",
            "--complete-platform",
            str(platform_file),
            *requirements,
            *(() if transitive else ("--intransitive",)),
            "--lock",
            str(lock_file),
        ]
        result = subprocess.run(argv, capture_output=True, text=True, env=_pex_environment())
    if result.returncode != 0:
        raise staging.ResolveError(_explain(what, platform, lock, result.stderr))


def _pex_command() -> list[str]:
    pex_pex = os.environ.get(PEX_PEX_VARIABLE)
    return [sys.executable, pex_pex] if pex_pex else [sys.executable, "-m", "pex.cli"]


def _certificate_args() -> list[str]:
    for variable in _CA_BUNDLE_VARIABLES:
        bundle = os.environ.get(variable)
        if bundle and os.path.isfile(bundle):
            return ["--cert", bundle]
    return []


def _pex_environment() -> dict[str, str]:
    """pex's environment: nothing of the caller's pip or pex configuration steers it (a pip
    `constraint` file made pex fail on locked wheels on this project's machines)."""
    keep = ("HOME", "PEX_ROOT", "SSL_CERT_FILE", "SSL_CERT_DIR", "TMPDIR")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(PATH="/usr/bin:/bin", PIP_CONFIG_FILE=os.devnull, PEX_IGNORE_RCFILES="1")
    if os.environ.get(PEX_PEX_VARIABLE):
        env["PEX_SCRIPT"] = "pex3"  # a pex PEX runs its `pex3` entry point only when asked
    return env


def _explain(what: str, platform: LambdaPlatform, lock: Path, stderr: str) -> str:
    missing = sorted({m["name"] for m in _NOT_IN_LOCK.finditer(stderr)})
    if missing:
        return (
            f"{what}: the lockfile {lock} does not hold {', '.join(missing)}; add "
            f"{'it' if len(missing) == 1 else 'them'} to the lock (`pants generate-lockfiles`, "
            "or `pex3 lock update`) or drop the requirement"
        )
    explained = staging.explain_resolve_failure(
        what,
        platform,
        stderr,
        fix="or build that wheel yourself and serve it from a find-links repository",
    )
    return " ".join(line.strip() for line in explained.splitlines() if line.strip())
