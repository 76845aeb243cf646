"""Parts: each distribution unit -> [its `.pyc`, by the runtime's CPython] -> a compressed part.

A unit's processes see only that unit (and the tool), so every function, layer and machine that
resolves the same wheel for the same platform shares its cached part. A distribution arrives as
the stored archive its resolve packed: without bytecode, `repack` compresses it (byte-identical to
a `build` of its files, as `lambda-zip package` makes the part); with bytecode, the compiler
unpacks it first. A process costs
about 0.1 s to start whatever it does, more than compressing a small distribution takes, so all
but a function's largest units are compiled and compressed together, one process for all of them,
each still into a part of its own: the merged archive does not change, and functions on the same
requirements still share the group's cached result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pants.engine.addresses import Address
from pants.engine.fs import (
    AddPrefix,
    CreateDigest,
    Digest,
    DigestEntries,
    DigestSubset,
    FileContent,
    FileEntry,
    MergeDigests,
    PathGlobs,
    RemovePrefix,
)
from pants.engine.process import Process, ProcessExecutionFailure, ProcessResult
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.option.global_options import GlobalOptions
from pants.util.logging import LogLevel

from lambda_rules import actions, facts, sandbox_files
from lambda_rules.errors import LambdaRulesError
from lambda_rules.platforms import LambdaPlatform
from lambda_rules.plugin.steps.cache import REMOTE_CACHE_SPECULATION_DELAY_MILLIS
from lambda_rules.plugin.steps.stage import UNIT_ARCHIVE, DistributionUnit
from lambda_rules.plugin.steps.tool import ZipperTool
from lambda_rules.plugin.subsystems.lambda_zip import LambdaZipSubsystem
from lambda_rules.scripts import interpreters
from lambda_rules.scripts.interpreters import InterpreterNotFoundError

# Where a unit's files go in a sandbox, and the part a compress process writes.
STAGED_DIR = "staged"
PART_FILE = "part.zip"
# Units from this size on may compile and compress on all the cores Pants grants.
_PARALLEL_UNIT_BYTES = 8 << 20
# Units below this size are compressed together (workunits of the README example on 2 cores:
# 106-135 ms per "Compress" process of a unit under 1 MB, 189 ms for pydantic-core's 4 MB).
SMALL_UNIT_BYTES = 2 << 20
# So are units below this share of all the units' bytes, leaving at most this many units a process
# of their own. Pants hands out process slots in the order processes reach it, not by size: with
# more processes than slots, the largest unit could wait behind small ones (an API function's
# botocore waited 0.2 s for aws-lambda-powertools on 2 cores), and the phase ends when the
# largest ends. A function of the unit set alone, so every machine makes the same processes.
_LARGE_UNIT_SHARE = 4
_GROUP_PARTS_DIR = "parts"
# Where a group's processes hold its units' archives: outside `STAGED_DIR`, which a compile
# process outputs.
_GROUP_ARCHIVES_DIR = "units"
# The list of executable files handed to the zipper's `--executables`.
_EXECUTABLES_FILE = "__lambda_executables.txt"
# Where a compile process's sandbox holds the compiler's files (`sandbox_files.BYTECODE_COMPILER`).
_BYTECODE_COMPILER_DIR = "__lambda_scripts"


class BytecodeCompileError(LambdaRulesError):
    """A source that must compile (first-party code) does not compile on the runtime."""


@dataclass(frozen=True)
class BytecodeCompilerRequest:
    address: Address
    platform: LambdaPlatform


@dataclass(frozen=True)
class BytecodeCompiler:
    """The runtime's CPython, and where Lambda loads the package from (for `co_filename`)."""

    python: str
    cache_tag: str
    prefix: str = facts.TASK_ROOT


@dataclass(frozen=True)
class CompileBytecodeRequest:
    """Compile each of `roots` (directories of `staged`) as a tree of its own, after unpacking
    each (archive, directory) of `unpack`."""

    staged: Digest
    roots: tuple[str, ...]
    description: str
    first_party: bool
    compiler: BytecodeCompiler
    cores: int
    unpack: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CompiledBytecode:
    """The unit's staged tree with `.pyc` beside its sources, and the compiler's exact version."""

    digest: Digest
    python_version: str


@dataclass(frozen=True)
class PrepareUnitRequest:
    """`cores`: what the unit's processes ask of Pants (`_cores_for`), by default by its size."""

    unit: DistributionUnit
    bytecode: BytecodeCompiler | None = None
    cores: int | None = None


@dataclass(frozen=True)
class PreparedUnit:
    """A unit's files under `staged/`, with `.pyc` if asked; the `build` arguments that keep
    them; and the exact version of the CPython that compiled them."""

    digest: Digest
    build_args: tuple[str, ...] = ()
    compiled_by: str | None = None


@dataclass(frozen=True)
class ExecutableBitsRequest:
    """The files of `digest` (at their sandbox paths) that are executable."""

    digest: Digest


@dataclass(frozen=True)
class ExecutableBits:
    """Their list, and the zipper's arguments that read it. A tree's modes in a sandbox are not
    its digest's: Pants links a file of 512 KB or more from its store, where it is 0555, so the
    zipper takes exec bits from the digest instead."""

    digest: Digest
    args: tuple[str, ...]


@dataclass(frozen=True)
class ZipPartsRequest:
    units: tuple[DistributionUnit, ...]
    bytecode: BytecodeCompiler | None = None


@dataclass(frozen=True)
class ZipPart:
    """A canonical archive of one unit, named `part.zip` at the digest root; with bytecode, the
    exact version of the CPython that compiled it."""

    digest: Digest
    compiled_by: str | None = None


@dataclass(frozen=True)
class ZipParts:
    parts: tuple[ZipPart, ...]


@rule(desc="Find the runtime's CPython", level=LogLevel.DEBUG)
async def find_bytecode_compiler(request: BytecodeCompilerRequest) -> BytecodeCompiler:
    """The interpreter `lambda-zip package` and `pants run` find, by the same rule (pyenv's
    highest 3.X.N, then fixed directories; `scripts/interpreters.py`), so both front ends compile
    with the same CPython."""
    try:
        python = interpreters.find_interpreter(request.platform.runtime)
    except InterpreterNotFoundError as e:
        raise InterpreterNotFoundError(
            f"{request.address}: `compile_bytecode=True` needs the runtime's CPython to compile "
            f"`.pyc` the runtime uses: {e} Or set `compile_bytecode=False`."
        ) from None
    return BytecodeCompiler(str(python), request.platform.runtime.cache_tag)


@rule(desc="Compile bytecode", level=LogLevel.DEBUG)
async def compile_bytecode(request: CompileBytecodeRequest) -> CompiledBytecode:
    """The unit's tree with reproducible `.pyc` beside its sources (see `bytecode.py`), and the
    compiler's exact version. A distribution's file that does not compile is skipped, as pip does
    at install time; a first-party one is an error."""
    compiler = request.compiler
    script = await Get(
        Digest,
        CreateDigest(
            [
                FileContent(f"{_BYTECODE_COMPILER_DIR}/{path}", content)
                for path, content in sandbox_files.BYTECODE_COMPILER.read().items()
            ]
        ),
    )
    try:
        result = await Get(
            ProcessResult,
            Process(
                argv=actions.compile_argv(
                    compiler.python,
                    _BYTECODE_COMPILER_DIR,
                    roots=request.roots,
                    load_root=compiler.prefix,
                    workers="{pants_concurrency}",
                    third_party=not request.first_party,
                    unpack=request.unpack,
                ),
                input_digest=await Get(Digest, MergeDigests([request.staged, script])),
                output_directories=(STAGED_DIR,),
                description=f"Compile bytecode of {request.description}",
                level=LogLevel.DEBUG,
                concurrency_available=request.cores,
                remote_cache_speculation_delay_millis=REMOTE_CACHE_SPECULATION_DELAY_MILLIS,
            ),
        )
    except ProcessExecutionFailure as e:
        raise BytecodeCompileError(
            f"Cannot compile bytecode of {request.description}:\n"
            f"{e.stderr.decode(errors='replace').strip()}\nFix the source or set "
            "`compile_bytecode=False`."
        ) from e
    return CompiledBytecode(result.output_digest, json.loads(result.stdout)["python"])


def _cores_for(request: PrepareUnitRequest) -> int:
    """Small units compile and zip in one process; large ones may use the cores Pants grants."""
    if request.unit.size < _PARALLEL_UNIT_BYTES:
        return 1
    return request.cores or 8


@rule(desc="List executable files", level=LogLevel.DEBUG)
async def executable_bits(request: ExecutableBitsRequest) -> ExecutableBits:
    entries = await Get(DigestEntries, Digest, request.digest)
    listed = "".join(
        f"{entry.path}\n"
        for entry in entries
        if isinstance(entry, FileEntry) and entry.is_executable
    )
    digest = await Get(Digest, CreateDigest([FileContent(_EXECUTABLES_FILE, listed.encode())]))
    return ExecutableBits(digest, ("--executables", _EXECUTABLES_FILE))


def _staged_path(unit: DistributionUnit, root: str) -> str:
    """Where a distribution's files go when unpacked below `root`, as the package holds them."""
    return f"{root}/{unit.path_prefix}".rstrip("/")


@rule(desc="Prepare a unit for zipping", level=LogLevel.DEBUG)
async def prepare_unit(request: PrepareUnitRequest) -> PreparedUnit:
    """A unit's files under `staged/`, compiled if asked: first-party code, or a distribution
    with bytecode (a distribution without is repacked from its archive, `zip_part`)."""
    unit = request.unit
    if unit.first_party:
        staged = await Get(Digest, AddPrefix(unit.digest, STAGED_DIR))
        unpack: tuple[tuple[str, str], ...] = ()
    else:
        staged = unit.digest
        unpack = ((UNIT_ARCHIVE, _staged_path(unit, STAGED_DIR)),)
    if not request.bytecode:
        assert unit.first_party, "a distribution without bytecode is repacked, not staged"
        bits = await Get(ExecutableBits, ExecutableBitsRequest(staged))
        return PreparedUnit(await Get(Digest, MergeDigests([staged, bits.digest])), bits.args)
    compiled = await Get(
        CompiledBytecode,
        CompileBytecodeRequest(
            staged,
            (STAGED_DIR,),
            unit.description,
            unit.first_party,
            request.bytecode,
            _cores_for(request),
            unpack,
        ),
    )
    # First-party sources reach the compiler's sandbox as links too, so their exec bits come from
    # the unit; a distribution's, from the files its archive unpacked to (`.pyc` never have one).
    bits = await Get(
        ExecutableBits, ExecutableBitsRequest(staged if unit.first_party else compiled.digest)
    )
    return PreparedUnit(
        await Get(Digest, MergeDigests([compiled.digest, bits.digest])),
        ("--include", *actions.bytecode_includes(request.bytecode.cache_tag), *bits.args),
        compiled.python_version,
    )


@rule(desc="Compress a distribution unit", level=LogLevel.DEBUG)
async def zip_part(
    request: PrepareUnitRequest, tool: ZipperTool, subsystem: LambdaZipSubsystem
) -> ZipPart:
    """Compress one unit. The inputs are only the unit (a distribution's archive, or files) and
    the tool, so the result is shared by every function, layer and machine that resolves the
    same distribution."""
    unit = request.unit
    if unit.first_party or request.bytecode:
        prepared = await Get(PreparedUnit, PrepareUnitRequest, request)
        source: tuple[str, ...] = ("build", STAGED_DIR, *prepared.build_args)
    else:
        prepared = PreparedUnit(unit.digest)
        prefix = ("--prefix", unit.path_prefix) if unit.path_prefix else ()
        source = ("repack", UNIT_ARCHIVE, *prefix)
    result = await Get(
        ProcessResult,
        Process,
        tool.process(
            argv=(
                *source,
                "-o",
                PART_FILE,
                "--max-workers",
                # Filled in by Pants with the cores it grants; not part of the cache key.
                "{pants_concurrency}",
                *subsystem.level_args(),
            ),
            input_digest=prepared.digest,
            output_files=(PART_FILE,),
            description=f"Compress {unit.description}",
            level=LogLevel.DEBUG,
            concurrency_available=_cores_for(request),
        ),
    )
    return ZipPart(result.output_digest, prepared.compiled_by)


@dataclass(frozen=True)
class ZipPartGroupRequest:
    """Units compiled and compressed by one process, a part each: a large unit alone (its own
    process, `zip_part`), or the small ones together."""

    units: tuple[DistributionUnit, ...]
    bytecode: BytecodeCompiler | None = None
    cores: int | None = None


@rule(desc="Compress small distribution units together", level=LogLevel.DEBUG)
async def zip_part_group(
    request: ZipPartGroupRequest, tool: ZipperTool, subsystem: LambdaZipSubsystem
) -> ZipParts:
    if len(request.units) == 1:
        prepare = PrepareUnitRequest(request.units[0], request.bytecode, request.cores)
        return ZipParts((await Get(ZipPart, PrepareUnitRequest, prepare),))
    described = f"{len(request.units)} small distributions: " + ", ".join(
        unit.description for unit in request.units
    )
    outputs = [f"{_GROUP_PARTS_DIR}/{index}/{PART_FILE}" for index in range(len(request.units))]
    renamed = await MultiGet(
        Get(Digest, AddPrefix(unit.digest, f"{_GROUP_ARCHIVES_DIR}/{index}"))
        for index, unit in enumerate(request.units)
    )
    inputs = await Get(Digest, MergeDigests(renamed))
    if request.bytecode:
        roots = tuple(f"{STAGED_DIR}/{index}" for index in range(len(request.units)))
        compiled = await Get(
            CompiledBytecode,
            CompileBytecodeRequest(
                inputs,
                roots,
                described,
                False,
                request.bytecode,
                1,
                tuple(
                    (f"{_GROUP_ARCHIVES_DIR}/{index}/{UNIT_ARCHIVE}", _staged_path(unit, root))
                    for index, (unit, root) in enumerate(zip(request.units, roots))
                ),
            ),
        )
        bits = await Get(ExecutableBits, ExecutableBitsRequest(compiled.digest))
        inputs = await Get(Digest, MergeDigests([compiled.digest, bits.digest]))
        compiled_by = compiled.python_version
        jobs = [arg for job in zip(roots, outputs) for arg in ("--part", *job)]
        jobs += ["--include", *actions.bytecode_includes(request.bytecode.cache_tag), *bits.args]
    else:
        compiled_by = None
        sources = [f"{_GROUP_ARCHIVES_DIR}/{i}/{UNIT_ARCHIVE}" for i in range(len(request.units))]
        jobs = [arg for job in zip(sources, outputs) for arg in ("--repack", *job)]
        (prefix,) = {unit.path_prefix for unit in request.units}  # one package's units
        jobs += ("--prefix", prefix) if prefix else ()
    result = await Get(
        ProcessResult,
        Process,
        tool.process(
            argv=("build-parts", *jobs, "--workers", "1", *subsystem.level_args()),
            input_digest=inputs,
            output_directories=(_GROUP_PARTS_DIR,),
            description=f"Compress {described}",
            level=LogLevel.DEBUG,
        ),
    )
    parts = await MultiGet(
        Get(Digest, DigestSubset(result.output_digest, PathGlobs([output]))) for output in outputs
    )
    unprefixed = await MultiGet(
        Get(Digest, RemovePrefix(part, f"{_GROUP_PARTS_DIR}/{index}"))
        for index, part in enumerate(parts)
    )
    return ZipParts(tuple(ZipPart(digest, compiled_by) for digest in unprefixed))


def _large_unit_cores(jobs: list[tuple[DistributionUnit, ...]], parallelism: int) -> int:
    """What each large unit's process asks of Pants: the cores the others leave it. Asking more
    than the slots free makes Pants take cores back from a process in its first 200 ms by
    restarting it (0.1 s of an API function's botocore in traces). Not part of a cache key."""
    grouped = sum(1 for job in jobs if len(job) > 1)
    return max(1, (parallelism - grouped) // max(1, len(jobs) - grouped))


def compression_jobs(request: ZipPartsRequest, parallelism: int) -> tuple[ZipPartGroupRequest, ...]:
    """The processes that compress `request.units`: each large unit alone, the small ones
    together, the largest job last. A function of the request (and of `parallelism`, which is
    no cache key), so every rule that asks for them gets the same, memoised, processes."""
    total = sum(unit.size for unit in request.units)
    small = tuple(
        unit
        for unit in request.units
        if unit.size < SMALL_UNIT_BYTES or unit.size * _LARGE_UNIT_SHARE < total
    )
    if len(small) < 2:
        small = ()
    jobs = [(unit,) for unit in request.units if unit not in small] + ([small] if small else [])
    # The largest last, then the others from the largest down: in our traces the engine runs the
    # last of a MultiGet's requests first (tokio runs the task spawned last next) and the rest
    # in order. The order is the engine's to choose, so `_LARGE_UNIT_SHARE` keeps the damage of
    # another order small.
    jobs.sort(key=lambda units: -sum(unit.size for unit in units))
    jobs = [*jobs[1:], *jobs[:1]]
    cores = _large_unit_cores(jobs, parallelism)
    return tuple(ZipPartGroupRequest(job, request.bytecode, cores) for job in jobs)


def jobs_before_a_free_core(
    jobs: tuple[ZipPartGroupRequest, ...], parallelism: int
) -> tuple[ZipPartGroupRequest, ...]:
    """The `compression_jobs` after which a core is free while the rest run: all but the last,
    or all of them when the last is a unit alone that takes every core."""
    if not jobs:
        return ()
    last = jobs[-1]
    if len(last.units) == 1:
        cores = _cores_for(PrepareUnitRequest(last.units[0], last.bytecode, last.cores))
        if cores >= parallelism:
            return jobs
    return jobs[:-1]


@rule(desc="Compress distribution units", level=LogLevel.DEBUG)
async def zip_parts(request: ZipPartsRequest, global_options: GlobalOptions) -> ZipParts:
    jobs = compression_jobs(request, global_options.process_execution_local_parallelism)
    results = await MultiGet(Get(ZipParts, ZipPartGroupRequest, job) for job in jobs)
    by_unit = {
        unit: part
        for job, result in zip(jobs, results)
        for unit, part in zip(job.units, result.parts)
    }
    return ZipParts(tuple(by_unit[unit] for unit in request.units))


def rules():
    return collect_rules()
