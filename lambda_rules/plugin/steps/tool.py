"""Tools: the programs every later process runs, built once per run from the plugin's own sources
and the lockfile beside its subsystem (or `[lambda-zip].install_from_resolve`), as ordinary process
outputs that local and remote caches hold.

`ZipperTool` (`sandbox_files.ZIPPER` and deflate) compresses and merges: it is on the path to every
part, so it starts small and early. `LambdaZipTool` (`sandbox_files.TOOL` and all the tool's
requirements) writes SBOMs and verifies. The wheel step installs the requirements from the lock
(pex only for `install_from_resolve`); our sources compile meanwhile, in a process of their own.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from packaging.utils import canonicalize_name, parse_wheel_filename
from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import PexLayout
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import Pex, PexRequest
from pants.backend.python.util_rules.pex_requirements import (
    PexRequirements,
    Resolve,
)
from pants.core.util_rules.adhoc_binaries import PythonBuildStandaloneBinary
from pants.engine.fs import (
    AddPrefix,
    CreateDigest,
    Digest,
    DigestEntries,
    DigestSubset,
    FileContent,
    MergeDigests,
    PathGlobs,
    RemovePrefix,
)
from pants.engine.process import Process, ProcessResult
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from lambda_rules import lock_formats, locks, sandbox_files
from lambda_rules.errors import LambdaRulesError
from lambda_rules.platforms import InterpreterPlatform
from lambda_rules.plugin.steps.cache import REMOTE_CACHE_SPECULATION_DELAY_MILLIS
from lambda_rules.plugin.steps.wheels import InstalledWheels, InstallWheelsRequest, quiet_packaging
from lambda_rules.plugin.subsystems.lambda_zip import DEFAULT_LOCKFILE_URL, LambdaZipSubsystem

# The tool's lock, shipped in the plugin (`DEFAULT_LOCKFILE_URL`).
_LOCK_PACKAGE, _LOCK_FILE = "lambda_rules.plugin.subsystems", "lambda_zip.lock"
# Where each process finds the tool; isolated (-I), without site-packages (-S): nothing of the
# interpreter's own environment can shadow the tool's pinned requirements.
_TOOL_DIR = "lambda_zip.pex"
_DEPS_DIR = f"{_TOOL_DIR}/.deps"
_TOOL_INTERPRETER_FLAGS = ("-I", "-S", "-B")


class ToolLayoutError(LambdaRulesError):
    """The pex in use lays out the tool's environment in a way this plugin does not know."""


@dataclass(frozen=True)
class SandboxTool:
    """Our sources, with bytecode, and their installed requirements, as a plain directory run by
    the interpreter they were resolved for.

    A pex venv would be created on first use on every fresh machine, about 2.5 s that no cache can
    share; this directory is an ordinary process output, so the local and remote caches hold it.
    Pants links it into each sandbox rather than copying it.
    """

    python: str
    digest: Digest
    # sys.path entries, relative to the sandbox: our sources, then each requirement.
    path: tuple[str, ...]
    module: ClassVar[str]

    def process(
        self,
        argv: tuple[str, ...],
        *,
        immutable_input_digests: Mapping[str, Digest] = FrozenDict(),
        module: str | None = None,
        sources_first: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> Process:
        """A process running `module` (this tool's by default); `sources_first` are sandbox
        directories of our own sources to import before the tool's (the verifier's)."""
        main = sandbox_files.entry_program(module or self.module, (*sources_first, *self.path))
        return Process(
            argv=(self.python, *_TOOL_INTERPRETER_FLAGS, "-c", main, *argv),
            immutable_input_digests={_TOOL_DIR: self.digest, **immutable_input_digests},
            remote_cache_speculation_delay_millis=REMOTE_CACHE_SPECULATION_DELAY_MILLIS,
            **kwargs,
        )


@dataclass(frozen=True)
class ZipperTool(SandboxTool):
    """The zipper and deflate: compresses units and merges parts."""

    module: ClassVar[str] = sandbox_files.ZIPPER_MODULE


@dataclass(frozen=True)
class LambdaZipTool(SandboxTool):
    """The `lambda-zip` verbs the rules run (the zipper's and `sbom`) with every requirement."""

    module: ClassVar[str] = sandbox_files.TOOL_MODULE


@dataclass(frozen=True)
class ToolRequirements:
    """The tool's requirements, each installed in a directory of its own under
    `lambda_zip.pex/.deps/` (pex's loose layout), and the interpreter they were chosen for."""

    python: str
    digest: Digest
    installed: tuple[str, ...]


@dataclass(frozen=True)
class CompiledToolSources:
    """`sandbox_files.TOOL` (a superset of `ZIPPER`) under `lambda_rules/`, with bytecode."""

    digest: Digest


async def _locked_requirements(pants_python: PythonBuildStandaloneBinary) -> ToolRequirements:
    """The lockfile shipped in the plugin, installed for the interpreter Pants itself runs on
    (Pants' convention for rule scripts; the rules run in it, so its tags are this process's) by
    the same wheel step as a function's distributions: pex built this environment in ~2.5 s on
    the path to every part; the wheel step takes ~0.4 s, beside the function's own."""
    lock_text = importlib.resources.files(_LOCK_PACKAGE).joinpath(_LOCK_FILE).read_text("utf-8")
    with quiet_packaging():
        wheels = locks.select_wheels(
            lock_formats.parse_lock(lock_text, DEFAULT_LOCKFILE_URL),
            sandbox_files.TOOL_REQUIREMENTS,
            InterpreterPlatform.current(),
            what="the lambda-zip tool",
        )
    installed = await Get(InstalledWheels, InstallWheelsRequest(wheels, "the lambda-zip tool"))
    digest = await Get(Digest, AddPrefix(installed.digest, _DEPS_DIR))
    directories = tuple(sorted(f"{_DEPS_DIR}/{wheel.filename}" for wheel in wheels))
    return ToolRequirements(pants_python.path, digest, directories)


async def _resolved_requirements(resolve: str, python_setup: PythonSetup) -> ToolRequirements:
    """`[lambda-zip].install_from_resolve`: the user's resolve, built by pex on the resolve's
    interpreter, in pex's loose layout (each requirement in a directory of its own under
    `.deps/`, importable as it is; no venv to create)."""
    requirements = await Get(
        Pex,
        PexRequest(
            output_filename=_TOOL_DIR,
            internal_only=True,
            layout=PexLayout.LOOSE,
            requirements=PexRequirements(
                from_superset=Resolve(resolve, use_entire_lockfile=True),
                description_of_origin="the `[lambda-zip].install_from_resolve` option",
            ),
            interpreter_constraints=InterpreterConstraints(
                python_setup.resolves_to_interpreter_constraints.get(
                    resolve, python_setup.interpreter_constraints
                )
            ),
        ),
    )
    assert requirements.python is not None, "a local PEX knows its interpreter"
    prefix = f"{_DEPS_DIR}/"
    entries = await Get(DigestEntries, Digest, requirements.digest)
    installed = sorted(
        {
            entry.path[: entry.path.index("/", len(prefix))]
            for entry in entries
            if entry.path.startswith(prefix) and "/" in entry.path[len(prefix) :]
        }
    )
    if not installed:
        raise ToolLayoutError(
            f"the lambda-zip tool's PEX has no installed requirements under {prefix}: this pex "
            "version lays out loose PEXes differently than lambda_rules expects."
        )
    deps = await Get(Digest, DigestSubset(requirements.digest, PathGlobs([f"{prefix}**"])))
    return ToolRequirements(requirements.python.path, deps, tuple(installed))


@rule(desc="Resolve the lambda-zip tool's requirements", level=LogLevel.DEBUG)
async def tool_requirements(
    subsystem: LambdaZipSubsystem,
    python_setup: PythonSetup,
    pants_python: PythonBuildStandaloneBinary,
) -> ToolRequirements:
    if subsystem.install_from_resolve:
        tool = await _resolved_requirements(subsystem.install_from_resolve, python_setup)
    else:
        tool = await _locked_requirements(pants_python)
    # Checked once, here: every process of ours runs one of these.
    _installed(
        tool,
        (*sandbox_files.ZIPPER_REQUIREMENTS, *sandbox_files.WHEEL_UNPACKER_REQUIREMENTS),
        "lambda_rules",
    )
    return tool


@rule(desc="Compile the lambda-zip tool", level=LogLevel.DEBUG)
async def compile_tool_sources(
    subsystem: LambdaZipSubsystem, pants_python: PythonBuildStandaloneBinary
) -> CompiledToolSources:
    """Our sources only: they compile while the requirements resolve (on Pants' own interpreter;
    a resolve named by `install_from_resolve` decides its interpreter, known once resolved). The
    requirements' modules stay uncompiled: a compile process of them would take one of the
    process slots from the parts, and only the SBOM writer imports more than deflate's few lines
    (0.1 s more per SBOM, once per set of distributions, against 0.4-0.6 s)."""
    python = pants_python.path
    if subsystem.install_from_resolve:
        python = (await Get(ToolRequirements)).python
    # Our sources travel as file contents, never as paths, so the processes that run them are
    # cacheable across checkouts and machines.
    sources = await Get(
        Digest,
        CreateDigest(
            FileContent(f"{_TOOL_DIR}/{path}", content)
            for path, content in sandbox_files.TOOL.read().items()
        ),
    )
    # Unchecked-hash bytecode (PEP 552) stays valid whatever mtimes the files get in a sandbox, so
    # no run of the tool compiles our modules again. A fixed hash seed keeps set constants in one
    # order (-S rather than -I, which would ignore PYTHONHASHSEED), so a machine that compiles the
    # tool itself gets the same digest, and the same cache keys downstream, as the others.
    result = await Get(
        ProcessResult,
        Process(
            argv=(
                python,
                "-S",
                "-m",
                "compileall",
                "-q",
                "--invalidation-mode=unchecked-hash",
                f"{_TOOL_DIR}/lambda_rules",
            ),
            input_digest=sources,
            output_directories=(f"{_TOOL_DIR}/lambda_rules",),
            env={"PYTHONHASHSEED": "0"},
            description="Compile the lambda-zip tool",
            remote_cache_speculation_delay_millis=REMOTE_CACHE_SPECULATION_DELAY_MILLIS,
            level=LogLevel.DEBUG,
        ),
    )
    return CompiledToolSources(await Get(Digest, RemovePrefix(result.output_digest, _TOOL_DIR)))


def _with_bytecode(file_set: sandbox_files.FileSet) -> PathGlobs:
    """The files of `file_set` and their `__pycache__/*.pyc`."""
    pycache = (
        f"{pattern.rpartition('/')[0]}/__pycache__/{pattern.rpartition('/')[2][:-3]}.*.pyc"
        for pattern in file_set.patterns
    )
    return PathGlobs([*file_set.patterns, *pycache])


def _installed(requirements: ToolRequirements, names: tuple[str, ...], who: str) -> tuple[str, ...]:
    """The directories of the tool's requirements that install `names`, all of them, or an error
    that names what is missing and where to add it."""
    needed = {canonicalize_name(name) for name in names}
    directories = tuple(
        directory
        for directory in requirements.installed
        if parse_wheel_filename(directory.rpartition("/")[2])[0] in needed
    )
    found = {parse_wheel_filename(d.rpartition("/")[2])[0] for d in directories}
    if found != needed:
        raise ToolLayoutError(
            f"the lambda-zip tool's requirements lack {', '.join(sorted(needed - found))} (found "
            f"{', '.join(d.rpartition('/')[2] for d in requirements.installed)}); {who} "
            "needs them: add them to the resolve `[lambda-zip].install_from_resolve` names."
        )
    return directories


@rule(desc="Build the zipper tool", level=LogLevel.DEBUG)
async def zipper_tool() -> ZipperTool:
    requirements, compiled = await MultiGet(Get(ToolRequirements), Get(CompiledToolSources))
    directories = _installed(requirements, sandbox_files.ZIPPER_REQUIREMENTS, "the zipper")
    sources, installed = await MultiGet(
        Get(Digest, DigestSubset(compiled.digest, _with_bytecode(sandbox_files.ZIPPER))),
        Get(Digest, DigestSubset(requirements.digest, PathGlobs([f"{d}/**" for d in directories]))),
    )
    installed = await Get(Digest, RemovePrefix(installed, _TOOL_DIR))
    return ZipperTool(
        requirements.python,
        await Get(Digest, MergeDigests([sources, installed])),
        (_TOOL_DIR, *directories),
    )


@rule(desc="Build the lambda-zip tool", level=LogLevel.DEBUG)
async def lambda_zip_tool() -> LambdaZipTool:
    requirements, compiled = await MultiGet(Get(ToolRequirements), Get(CompiledToolSources))
    installed = await Get(Digest, RemovePrefix(requirements.digest, _TOOL_DIR))
    return LambdaZipTool(
        requirements.python,
        await Get(Digest, MergeDigests([compiled.digest, installed])),
        (_TOOL_DIR, *requirements.installed),
    )


def rules():
    return collect_rules()
