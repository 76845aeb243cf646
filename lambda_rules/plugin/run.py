"""`run` on `lambda_function`: package the function, then invoke it locally as Lambda would.

The rule only wires Pants to the Pants-free invoker (`lambda_rules.scripts.invoke`): it builds the
package with the `package` rule, puts the zip and the scripts (as file contents) into the run's
digest, and runs the invoker with Pants' own interpreter. Run arguments after `--` (an event
file, or `-` for standard input) go to the invoker.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from pants.backend.python.util_rules.faas import (
    ResolvedPythonFaaSHandler,
    ResolvePythonFaaSHandlerRequest,
)
from pants.core.goals.package import BuiltPackage
from pants.core.goals.run import RunFieldSet, RunInSandboxBehavior, RunRequest
from pants.engine.fs import CreateDigest, Digest, DigestEntries, FileContent, FileEntry
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import WrappedTarget, WrappedTargetRequest
from pants.util.logging import LogLevel

from lambda_rules import sandbox_files
from lambda_rules.plugin.field_sets import LambdaFunctionFieldSet
from lambda_rules.plugin.steps.layer_contents import (
    LambdaFunctionLayers,
    LambdaFunctionLayersRequest,
)
from lambda_rules.plugin.subsystems.lambda_run import LambdaRunSubsystem
from lambda_rules.plugin.target_types import (
    LambdaArchitectureField,
    LambdaExtraEnvVarsField,
    LambdaFunctionHandlerField,
    LambdaMemorySizeField,
    LambdaRuntimeField,
    LambdaTimeoutField,
)
from lambda_rules.scripts.lambda_environment import function_name_for

_RUN_DIR = "__lambda_run"
_SCRIPTS_DIR = f"{_RUN_DIR}/scripts"


@dataclass(frozen=True)
class LambdaFunctionRunFieldSet(RunFieldSet):
    required_fields = (LambdaFunctionHandlerField, LambdaRuntimeField)
    run_in_sandbox_behavior = RunInSandboxBehavior.NOT_SUPPORTED

    handler: LambdaFunctionHandlerField
    runtime: LambdaRuntimeField
    architecture: LambdaArchitectureField
    timeout: LambdaTimeoutField
    memory_size: LambdaMemorySizeField
    extra_env_vars: LambdaExtraEnvVarsField


def _package_zip(entries: DigestEntries, expected_path: str) -> FileEntry:
    """The deployment package among the `package` outputs (beside its copies and manifest)."""
    zips = [e for e in entries if isinstance(e, FileEntry) and e.path.endswith(".zip")]
    for entry in zips:
        if entry.path == expected_path:
            return entry
    if not zips:
        raise ValueError(f"`package` wrote no .zip for {expected_path}")
    return min(zips, key=lambda e: (len(e.path), e.path))


@rule(desc="Prepare a local Lambda invoke", level=LogLevel.DEBUG)
async def run_lambda_function(
    field_set: LambdaFunctionRunFieldSet, subsystem: LambdaRunSubsystem
) -> RunRequest:
    wrapped = await Get(
        WrappedTarget,
        WrappedTargetRequest(field_set.address, description_of_origin="the `run` goal"),
    )
    package_field_set = LambdaFunctionFieldSet.create(wrapped.target)
    built, handler, function_layers = await MultiGet(
        Get(BuiltPackage, LambdaFunctionFieldSet, package_field_set),
        Get(ResolvedPythonFaaSHandler, ResolvePythonFaaSHandlerRequest(field_set.handler)),
        Get(LambdaFunctionLayers, LambdaFunctionLayersRequest(package_field_set)),
    )
    entries = await Get(DigestEntries, Digest, built.digest)
    archive = _package_zip(
        entries, package_field_set.output_path.value_or_default(file_ending="zip")
    )
    archive_path = f"{_RUN_DIR}/{Path(archive.path).name}"
    # Each layer's zip, extracted by the invoker under /opt as Lambda does.
    layer_zips = await MultiGet(
        Get(DigestEntries, Digest, layer.archive.digest) for layer in function_layers.layers
    )
    layer_files = [
        FileEntry(f"{_RUN_DIR}/layers/{index}/{Path(entry.path).name}", entry.file_digest)
        for index, (entry,) in enumerate(layer_zips)
        if isinstance(entry, FileEntry)
    ]
    digest = await Get(
        Digest,
        CreateDigest(
            [
                FileEntry(archive_path, archive.file_digest),
                *(
                    FileContent(f"{_SCRIPTS_DIR}/{path}", content)
                    for path, content in sandbox_files.INVOKER.read().items()
                ),
                *layer_files,
            ]
        ),
    )
    env_args = [arg for item in field_set.extra_env_vars.value or () for arg in ("--env", item)]
    return RunRequest(
        digest=digest,
        args=(
            # Pants' own interpreter runs the stdlib-only invoker; the handler runs in a CPython
            # of the runtime's version that the invoker finds.
            sys.executable,
            "-I",
            "-B",
            "-c",
            sandbox_files.entry_program(
                sandbox_files.INVOKER_MODULE, (f"{{chroot}}/{_SCRIPTS_DIR}",)
            ),
            f"{{chroot}}/{archive_path}",
            "--runtime",
            field_set.runtime.value,
            "--handler",
            f"{handler.module}.{handler.func}",
            "--architecture",
            field_set.architecture.value,
            "--timeout",
            str(field_set.timeout.value),
            "--memory-size",
            str(field_set.memory_size.value),
            "--function-name",
            function_name_for(field_set.address.spec),
            "--region",
            subsystem.region,
            *env_args,
            *(arg for f in layer_files for arg in ("--layer", f"{{chroot}}/{f.path}")),
        ),
    )


def rules():
    return (
        *collect_rules(),
        *LambdaFunctionRunFieldSet.rules(),
    )
