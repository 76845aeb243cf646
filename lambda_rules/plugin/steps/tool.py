"""Tool: the `lambda-zip` command every later process runs (`lambda_rules.sandbox_files.TOOL`).

Built once per run from the plugin's own sources and the lockfile beside its subsystem (or
`[lambda-zip].install_from_resolve`), as an ordinary process output that local and remote caches
hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import PexLayout
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import Pex, PexRequest
from pants.backend.python.util_rules.pex_environment import PythonExecutable
from pants.backend.python.util_rules.pex_requirements import (
    EntireLockfile,
    Lockfile,
    PexRequirements,
    Resolve,
)
from pants.core.util_rules.adhoc_binaries import PythonBuildStandaloneBinary
from pants.engine.fs import (
    AddPrefix,
    CreateDigest,
    Digest,
    DigestEntries,
    FileContent,
    MergeDigests,
    RemovePrefix,
)
from pants.engine.process import Process, ProcessResult
from pants.engine.rules import Get, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from lambda_rules import sandbox_files
from lambda_rules.errors import LambdaRulesError
from lambda_rules.plugin.steps.cache import REMOTE_CACHE_SPECULATION_DELAY_MILLIS
from lambda_rules.plugin.subsystems.lambda_zip import DEFAULT_LOCKFILE_URL, LambdaZipSubsystem

# Where each process finds the tool; isolated (-I), without site-packages (-S): nothing of the
# interpreter's own environment can shadow the tool's pinned requirements.
_TOOL_DIR = "lambda_zip.pex"
_TOOL_INTERPRETER_FLAGS = ("-I", "-S", "-B")


class ToolLayoutError(LambdaRulesError):
    """The pex in use lays out the tool's environment in a way this plugin does not know."""


@dataclass(frozen=True)
class LambdaZipTool:
    """The zipper as a plain directory (its sources and its installed requirements, all with
    bytecode), run by the interpreter it was resolved for.

    A pex venv would be created on first use on every fresh machine, about 2.5 s that no cache can
    share; this directory is an ordinary process output, so the local and remote caches hold it.
    Pants links it into each sandbox rather than copying it.
    """

    python: str
    digest: Digest
    # sys.path entries, relative to the sandbox: the tool's sources, then each requirement.
    path: tuple[str, ...]

    def process(
        self,
        argv: tuple[str, ...],
        *,
        immutable_input_digests: Mapping[str, Digest] = FrozenDict(),
        module: str = sandbox_files.TOOL_MODULE,
        sources_first: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> Process:
        """A process running `module` (the tool's verbs by default); `sources_first` are sandbox
        directories of our own sources to import before the tool's (the verifier's)."""
        main = sandbox_files.entry_program(module, (*sources_first, *self.path))
        return Process(
            argv=(self.python, *_TOOL_INTERPRETER_FLAGS, "-c", main, *argv),
            immutable_input_digests={_TOOL_DIR: self.digest, **immutable_input_digests},
            remote_cache_speculation_delay_millis=REMOTE_CACHE_SPECULATION_DELAY_MILLIS,
            **kwargs,
        )


@rule(desc="Build the lambda-zip tool", level=LogLevel.DEBUG)
async def lambda_zip_tool(
    subsystem: LambdaZipSubsystem,
    python_setup: PythonSetup,
    pants_python: PythonBuildStandaloneBinary,
) -> LambdaZipTool:
    # The tool's own sources travel as file contents, never as paths, so the process that runs
    # them is cacheable across checkouts and machines.
    sources = await Get(
        Digest,
        CreateDigest(
            FileContent(path, content) for path, content in sandbox_files.TOOL.read().items()
        ),
    )
    if subsystem.install_from_resolve:
        tool_environment: dict[str, Any] = dict(
            requirements=PexRequirements(
                from_superset=Resolve(subsystem.install_from_resolve, use_entire_lockfile=True),
                description_of_origin="the `[lambda-zip].install_from_resolve` option",
            ),
            interpreter_constraints=InterpreterConstraints(
                python_setup.resolves_to_interpreter_constraints.get(
                    subsystem.install_from_resolve, python_setup.interpreter_constraints
                )
            ),
        )
    else:
        # The lockfile shipped in the plugin, run on the interpreter Pants itself runs on (Pants'
        # convention for rule scripts): no interpreter search, which on a fresh machine costs
        # seconds and cannot be cached. No resolve name, so Pants does not add a resolve's
        # interpreter constraints to a request that names its interpreter.
        tool_environment = dict(
            requirements=EntireLockfile(
                Lockfile(
                    url=DEFAULT_LOCKFILE_URL,
                    url_description_of_origin="the lockfile shipped with lambda_rules",
                    resolve_name="",
                )
            ),
            python=PythonExecutable(pants_python.path),
        )
    # pex's loose layout: each requirement installed in a directory of its own under `.deps/`,
    # importable as it is. No venv to create (pex3 venv create costs ~2.7 s even warm).
    requirements = await Get(
        Pex,
        PexRequest(
            output_filename=_TOOL_DIR,
            internal_only=True,
            layout=PexLayout.LOOSE,
            **tool_environment,
        ),
    )
    assert requirements.python is not None, "a local PEX knows its interpreter"
    deps = f"{_TOOL_DIR}/.deps/"
    entries = await Get(DigestEntries, Digest, requirements.digest)
    installed = sorted(
        {
            entry.path[: entry.path.index("/", len(deps))]
            for entry in entries
            if entry.path.startswith(deps) and "/" in entry.path[len(deps) :]
        }
    )
    if not installed:
        raise ToolLayoutError(
            f"the lambda-zip tool's PEX has no installed requirements under {deps}: this pex "
            "version lays out loose PEXes differently than lambda_rules expects."
        )
    # Unchecked-hash bytecode (PEP 552) stays valid whatever mtimes the files get in a sandbox, so
    # no run of the tool compiles its own modules again. A fixed hash seed keeps set constants in
    # one order (-S rather than -I, which would ignore PYTHONHASHSEED), so a machine that compiles
    # the tool itself gets the same digest, and the same cache keys downstream, as the others.
    compiled = await Get(
        ProcessResult,
        Process(
            argv=(
                requirements.python.path,
                "-S",
                "-m",
                "compileall",
                "-q",
                "--invalidation-mode=unchecked-hash",
                f"{_TOOL_DIR}/lambda_rules",
                *installed,
            ),
            input_digest=await Get(
                Digest,
                MergeDigests(
                    [requirements.digest, await Get(Digest, AddPrefix(sources, _TOOL_DIR))]
                ),
            ),
            output_directories=(f"{_TOOL_DIR}/lambda_rules", deps),
            env={"PYTHONHASHSEED": "0"},
            description="Compile the lambda-zip tool",
            remote_cache_speculation_delay_millis=REMOTE_CACHE_SPECULATION_DELAY_MILLIS,
            level=LogLevel.DEBUG,
        ),
    )
    return LambdaZipTool(
        requirements.python.path,
        await Get(Digest, RemovePrefix(compiled.output_digest, _TOOL_DIR)),
        (_TOOL_DIR, *installed),
    )


def rules():
    return collect_rules()
