"""Resolve: a target's requirements -> the locked wheels they need on one Lambda platform
(`locks.select_wheels`, in the rule) -> one stored archive per wheel's unit
(`scripts/unpack_wheels.py`, one process that fetches into a named cache and writes the units).

No pex on this path: the lock already names each wheel's URL and sha256, and a unit is a pure
function of one wheel's bytes. `pants generate-lockfiles` (pex) still makes the locks.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import dataclass
from typing import Iterator

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import PythonResolveField
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import PexRequest, ReqStrings
from pants.backend.python.util_rules.pex_from_targets import PexFromTargetsRequest
from pants.backend.python.util_rules.pex_requirements import (
    LoadedLockfile,
    LoadedLockfileRequest,
    Lockfile,
    PexRequirements,
    Resolve,
)
from pants.core.util_rules.adhoc_binaries import PythonBuildStandaloneBinary
from pants.engine.addresses import Address
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import (
    EMPTY_DIGEST,
    CreateDigest,
    Digest,
    DigestContents,
    FileContent,
    RemovePrefix,
)
from pants.engine.process import Process, ProcessExecutionFailure, ProcessResult
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import WrappedTarget, WrappedTargetRequest
from pants.option.global_options import GlobalOptions
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from lambda_rules import fetch, lock_formats, locks, sandbox_files
from lambda_rules.platforms import LambdaPlatform
from lambda_rules.plugin.steps.cache import REMOTE_CACHE_SPECULATION_DELAY_MILLIS

_UNITS_DIR = "units"
_UNPACKER_DIR = "__lambda_unpacker"
_WHEELS_JSON = "__lambda_wheels.json"
# The named cache that holds fetched wheels under `wheels/` (`fetch.WheelCache`), as
# `lambda-zip`'s --cache-dir does: a run without the process cache, or another repository on
# this machine, takes a wheel it already fetched from there. `verify` shares it.
NAMED_CACHE = FrozenDict({"lambda_rules": ".cache/lambda_rules"})
NAMED_CACHE_DIR = ".cache/lambda_rules"
# Below it, units by their wheel (`unit_cache.UnitCache`), as `lambda-zip`'s --cache-dir keeps
# them.
_UNIT_CACHE_DIR = "units"
# What reaches a download from the environment: proxies and a netrc (a corporate network's).
_NETWORK_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "NETRC",
)


@dataclass(frozen=True)
class ResolveLambdaDistributionsRequest:
    address: Address
    platform: LambdaPlatform


@dataclass(frozen=True)
class LambdaDistributions:
    """Third-party distributions for one Lambda platform, one unit per wheel, as
    `wheel_units.write_units` lays them out at the digest root (empty without requirements)."""

    digest: Digest


@dataclass(frozen=True)
class UnpackWheelsRequest:
    wheels: tuple[locks.LockedWheel, ...]
    address: str
    platform: str


@dataclass(frozen=True)
class ParsedLockRequest:
    digest: Digest
    path: str


@dataclass(frozen=True)
class ParsedLock:
    """The lock, or why it cannot be read: raised only for a target that needs it."""

    lock: locks.Lock | None
    error: str | None = None


@dataclass(frozen=True)
class TargetLockRequest:
    address: Address


@dataclass(frozen=True)
class TargetLock:
    """The lock of the resolve a target names, read while its dependencies are gathered, or
    None without resolves."""

    resolve: str | None
    lock: ParsedLockRequest | None


@dataclass(frozen=True)
class ChooseWheelsRequest:
    lock: ParsedLockRequest
    requirements: tuple[str, ...]
    platform: LambdaPlatform


@dataclass(frozen=True)
class ChosenWheels:
    """The wheels, or why there are none: a message that names `TARGET` where the target goes
    (the choice is shared by every target on the same requirements)."""

    wheels: tuple[locks.LockedWheel, ...]
    error: str | None = None


TARGET = "<target>"


@rule(desc="Read a lock", level=LogLevel.DEBUG)
async def parse_lambda_lock(request: ParsedLockRequest) -> ParsedLock:
    """Parsed once per lock and run, whatever number of targets select from it."""
    contents = await Get(DigestContents, Digest, request.digest)
    try:
        with quiet_packaging():
            text = contents[0].content.decode("utf-8")
            return ParsedLock(lock_formats.parse_lock(text, request.path))
    except locks.LockError as error:
        return ParsedLock(None, str(error))


async def _lock_request(resolve: Resolve) -> ParsedLockRequest:
    lockfile = await Get(Lockfile, Resolve, resolve)
    loaded = await Get(LoadedLockfile, LoadedLockfileRequest(lockfile))
    return ParsedLockRequest(loaded.lockfile_digest, lockfile.url)


@rule(desc="Read a target's lock", level=LogLevel.DEBUG)
async def target_lock(request: TargetLockRequest, python_setup: PythonSetup) -> TargetLock:
    """Parsing a lock takes Pants' `packaging` (21.3, pyparsing) about 0.1-0.2 s for an API
    function's 29 distributions: begun from the target's own `resolve` field, it runs while Pants
    gathers the target's requirements, instead of after."""
    if not python_setup.enable_resolves:
        return TargetLock(None, None)
    wrapped = await Get(
        WrappedTarget,
        WrappedTargetRequest(request.address, description_of_origin="the Lambda resolve step"),
    )
    if not wrapped.target.has_field(PythonResolveField):
        return TargetLock(None, None)
    resolve = wrapped.target[PythonResolveField].normalized_value(python_setup)
    lock = await _lock_request(Resolve(resolve, use_entire_lockfile=False))
    await Get(ParsedLock, ParsedLockRequest, lock)
    return TargetLock(resolve, lock)


def _requirements_pex(
    request: ResolveLambdaDistributionsRequest, python_setup: PythonSetup
) -> PexFromTargetsRequest:
    """Pants' view of the target's requirements (the closure's, checked to share one resolve)."""
    major, minor = request.platform.runtime.python_version
    return PexFromTargetsRequest(
        [request.address],
        output_filename="lambda_requirements.pex",
        internal_only=False,
        include_source_files=False,
        # The runtime decides the interpreter, not the repository's default constraints.
        hardcoded_interpreter_constraints=InterpreterConstraints(
            [request.platform.interpreter_constraint]
        )
        if f"{major}.{minor}" in python_setup.interpreter_versions_universe
        else None,
    )


@rule(desc="Resolve Lambda distributions", level=LogLevel.DEBUG)
async def resolve_lambda_distributions(
    request: ResolveLambdaDistributionsRequest, python_setup: PythonSetup
) -> LambdaDistributions:
    platform = request.platform
    pex_request, target_lock = await MultiGet(
        Get(PexRequest, PexFromTargetsRequest, _requirements_pex(request, python_setup)),
        Get(TargetLock, TargetLockRequest(request.address)),
    )
    requirements = pex_request.requirements
    if not isinstance(requirements, PexRequirements):
        raise locks.LockError(f"{request.address}: its requirements come from no lock")
    strings = (await Get(ReqStrings, PexRequirements, requirements)).req_strings
    if not strings:
        return LambdaDistributions(EMPTY_DIGEST)
    if not isinstance(requirements.from_superset, Resolve):
        raise locks.LockError(
            f"{request.address}: Lambda packages install locked wheels only; enable "
            "`[python].enable_resolves` and run `pants generate-lockfiles`"
        )
    lock = target_lock.lock
    if lock is None or target_lock.resolve != requirements.from_superset.name:
        lock = await _lock_request(requirements.from_superset)
    chosen = await Get(ChosenWheels, ChooseWheelsRequest(lock, tuple(strings), platform))
    if chosen.error is not None:
        raise locks.LockError(chosen.error.replace(TARGET, str(request.address), 1))
    return await Get(
        LambdaDistributions,
        UnpackWheelsRequest(chosen.wheels, str(request.address), platform.description),
    )


@rule(desc="Choose locked wheels", level=LogLevel.DEBUG)
async def choose_wheels(request: ChooseWheelsRequest) -> ChosenWheels:
    """Chosen once per lock, requirements and platform, however many targets share them."""
    parsed = await Get(ParsedLock, ParsedLockRequest, request.lock)
    if parsed.lock is None:
        return ChosenWheels((), parsed.error)
    try:
        with quiet_packaging():
            wheels = locks.select_wheels(
                parsed.lock, request.requirements, request.platform, what=TARGET
            )
    except locks.LockError as error:
        return ChosenWheels((), str(error))
    return ChosenWheels(wheels)


class NetworkEnvironment(FrozenDict[str, str]):
    """What a process that downloads gets of this machine's network settings."""


@rule(desc="Read the network settings", level=LogLevel.DEBUG)
async def network_environment(global_options: GlobalOptions) -> NetworkEnvironment:
    """Proxies and a netrc from the environment, and Pants' CA bundle (`[GLOBAL].ca_certs_path`,
    which ./pants takes from the host's pip config). Only what is set is passed, so most
    machines share cache keys."""
    network = await Get(EnvironmentVars, EnvironmentVarsRequest(_NETWORK_VARIABLES))
    env = {name: value for name, value in network.items() if value}
    if global_options.ca_certs_path:
        env[fetch.CA_BUNDLE_VARIABLES[0]] = os.path.abspath(global_options.ca_certs_path)
    netrc = os.path.expanduser("~/.netrc")
    if "NETRC" not in env and os.path.isfile(netrc):
        env["NETRC"] = netrc
    return NetworkEnvironment(env)


def _unpack_process(
    wheels: tuple[locks.LockedWheel, ...],
    network: NetworkEnvironment,
    python: str,
    description: str,
    inputs: Digest,
    *extra_args: str,
) -> Process:
    program = sandbox_files.entry_program(sandbox_files.WHEEL_UNPACKER_MODULE, (_UNPACKER_DIR,))
    argv = ("--wheels", _WHEELS_JSON, "--cache", f"{NAMED_CACHE_DIR}/wheels", "--out", _UNITS_DIR)
    return Process(
        argv=(python, "-I", "-S", "-B", "-c", program, *argv, *extra_args),
        input_digest=inputs,
        output_directories=(_UNITS_DIR,),
        append_only_caches=NAMED_CACHE,
        env=network,
        description=description,
        level=LogLevel.DEBUG,
        remote_cache_speculation_delay_millis=REMOTE_CACHE_SPECULATION_DELAY_MILLIS,
    )


async def _unpacked(
    wheels: tuple[locks.LockedWheel, ...],
    network: NetworkEnvironment,
    python: str,
    description: str,
    who: str,
    *extra_args: str,
    unit_cache: bool = False,
) -> Digest:
    """The wheel step's output for `wheels`: one process keyed by their URLs and sha256s alone.
    It runs on Pants' own interpreter with the standard library, installer's sources and ours,
    so it starts at once instead of after the tool's environment is built. With `unit_cache`,
    it keeps and reuses units in the named cache, in a folder named by those sources."""
    listed = [{"url": w.url, "sha256": w.sha256} for w in wheels]
    sources = sandbox_files.layout_sources()
    if unit_cache:
        layout = sandbox_files.fingerprint(sources)
        extra_args = (*extra_args, "--unit-cache", f"{NAMED_CACHE_DIR}/{_UNIT_CACHE_DIR}/{layout}")
    inputs = await Get(
        Digest,
        CreateDigest(
            [
                FileContent(_WHEELS_JSON, json.dumps(listed, sort_keys=True).encode()),
                *(FileContent(f"{_UNPACKER_DIR}/{p}", content) for p, content in sources.items()),
            ]
        ),
    )
    process = _unpack_process(wheels, network, python, description, inputs, *extra_args)
    try:
        result = await Get(ProcessResult, Process, process)
    except ProcessExecutionFailure as e:
        detail = e.stderr.decode(errors="replace").strip().rpartition("lambda_rules: ")[2]
        raise locks.LockError(f"{who}: {detail}") from e
    return await Get(Digest, RemovePrefix(result.output_digest, _UNITS_DIR))


@rule(desc="Fetch and unpack locked wheels", level=LogLevel.DEBUG)
async def unpack_wheels(
    request: UnpackWheelsRequest,
    network_environment: NetworkEnvironment,
    pants_python: PythonBuildStandaloneBinary,
) -> LambdaDistributions:
    """One unit per wheel a target needs. A wheel that any target laid out before on this
    machine is taken from the named cache's units, named by the sources that lay them out: a
    run without the process cache, a lock that bumps one pin, or another set of requirements
    reads only the wheels it has not seen (pex keeps its installed wheels so too)."""
    description = f"Unpack {len(request.wheels)} wheels of {request.address} for {request.platform}"
    digest = await _unpacked(
        request.wheels,
        network_environment,
        pants_python.path,
        description,
        request.address,
        unit_cache=True,
    )
    return LambdaDistributions(digest)


@dataclass(frozen=True)
class InstallWheelsRequest:
    """Wheels for the interpreter running Pants, each installed in `<wheel filename>/`."""

    wheels: tuple[locks.LockedWheel, ...]
    description: str


@dataclass(frozen=True)
class InstalledWheels:
    digest: Digest


@rule(desc="Fetch and install locked wheels", level=LogLevel.DEBUG)
async def install_wheels(
    request: InstallWheelsRequest,
    network_environment: NetworkEnvironment,
    pants_python: PythonBuildStandaloneBinary,
) -> InstalledWheels:
    description = f"Install {len(request.wheels)} wheels of {request.description}"
    digest = await _unpacked(
        request.wheels,
        network_environment,
        pants_python.path,
        description,
        request.description,
        "--installed",
    )
    return InstalledWheels(digest)


@contextlib.contextmanager
def quiet_packaging() -> Iterator[None]:
    """Pants 2.17's `packaging` (21.3) calls pyparsing names that pyparsing 3 deprecates; Pants
    would log each such warning of ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def rules():
    return collect_rules()
