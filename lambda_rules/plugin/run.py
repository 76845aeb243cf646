"""`run` on `lambda_function` and `lambda_image`: package the function, then invoke it locally as
Lambda would (from the zip, or from the image's layers).

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
from pants.engine.fs import (
    AddPrefix,
    CreateDigest,
    Digest,
    DigestEntries,
    FileContent,
    FileEntry,
    MergeDigests,
)
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import Target, WrappedTarget, WrappedTargetRequest
from pants.util.logging import LogLevel

from lambda_rules import sandbox_files
from lambda_rules.plugin.field_sets import LambdaFunctionFieldSet, LambdaImageFieldSet
from lambda_rules.plugin.steps.image import BuiltLambdaImage
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


@dataclass(frozen=True)
class _RunInputs:
    """The package in the run's digest: where it is, and the layers' zips beside it."""

    digest: Digest
    archive_path: str
    layer_paths: tuple[str, ...] = ()


async def _zip_inputs(target: Target) -> _RunInputs:
    """A function's zip, and each layer's zip, extracted by the invoker under /opt as Lambda
    does."""
    field_set = LambdaFunctionFieldSet.create(target)
    built, function_layers = await MultiGet(
        Get(BuiltPackage, LambdaFunctionFieldSet, field_set),
        Get(LambdaFunctionLayers, LambdaFunctionLayersRequest(field_set)),
    )
    entries = await Get(DigestEntries, Digest, built.digest)
    archive = _package_zip(entries, field_set.output_path.value_or_default(file_ending="zip"))
    archive_path = f"{_RUN_DIR}/{Path(archive.path).name}"
    layer_zips = await MultiGet(
        Get(DigestEntries, Digest, layer.archive.digest) for layer in function_layers.layers
    )
    layer_files = [
        FileEntry(f"{_RUN_DIR}/layers/{index}/{Path(entry.path).name}", entry.file_digest)
        for index, (entry,) in enumerate(layer_zips)
        if isinstance(entry, FileEntry)
    ]
    digest = await Get(
        Digest, CreateDigest([FileEntry(archive_path, archive.file_digest), *layer_files])
    )
    return _RunInputs(digest, archive_path, tuple(f.path for f in layer_files))


async def _image_inputs(target: Target) -> _RunInputs:
    """An image's OCI layout: the invoker extracts its layers' /var/task."""
    built = await Get(BuiltLambdaImage, LambdaImageFieldSet, LambdaImageFieldSet.create(target))
    digest = await Get(Digest, AddPrefix(built.package.digest, _RUN_DIR))
    return _RunInputs(digest, f"{_RUN_DIR}/{built.layout}")


@rule(desc="Prepare a local Lambda invoke", level=LogLevel.DEBUG)
async def run_lambda_function(
    field_set: LambdaFunctionRunFieldSet, subsystem: LambdaRunSubsystem
) -> RunRequest:
    wrapped = await Get(
        WrappedTarget,
        WrappedTargetRequest(field_set.address, description_of_origin="the `run` goal"),
    )
    target = wrapped.target
    is_image = LambdaImageFieldSet.is_applicable(target)
    handler = await Get(
        ResolvedPythonFaaSHandler, ResolvePythonFaaSHandlerRequest(field_set.handler)
    )
    inputs = await (_image_inputs(target) if is_image else _zip_inputs(target))
    scripts = await Get(
        Digest,
        CreateDigest(
            FileContent(f"{_SCRIPTS_DIR}/{path}", content)
            for path, content in sandbox_files.INVOKER.read().items()
        ),
    )
    env_args = [arg for item in field_set.extra_env_vars.value or () for arg in ("--env", item)]
    return RunRequest(
        digest=await Get(Digest, MergeDigests([inputs.digest, scripts])),
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
            f"{{chroot}}/{inputs.archive_path}",
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
            *(arg for path in inputs.layer_paths for arg in ("--layer", f"{{chroot}}/{path}")),
        ),
    )


def rules():
    return (
        *collect_rules(),
        *LambdaFunctionRunFieldSet.rules(),
    )
