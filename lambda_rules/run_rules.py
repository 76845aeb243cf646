"""`run` on `lambda_function`: package the function, then invoke it locally like Lambda would.

The rule only wires Pants to the Pants-free invoker (`lambda_rules/invoke.py`): it builds the
package with the `package` rule, puts the zip and the invoker's source (as file content) into the
run's digest, and runs the invoker with Pants' own interpreter. Run arguments after `--` (an
event file, or `-` for standard input) go to the invoker.
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
from pants.option.option_types import StrOption
from pants.option.subsystem import Subsystem
from pants.util.logging import LogLevel
from pants.util.strutil import help_text

from lambda_rules import invoke
from lambda_rules.rules import (
    LambdaFunctionFieldSet,
    LambdaFunctionLayers,
    LambdaFunctionLayersRequest,
)
from lambda_rules.target_types import (
    LambdaArchitectureField,
    LambdaExtraEnvVarsField,
    LambdaFunctionHandlerField,
    LambdaMemorySizeField,
    LambdaRuntimeField,
    LambdaTimeoutField,
)

_RUN_DIR = "__lambda_run"
_INVOKER = Path(invoke.__file__).with_suffix(".py")


class LambdaRunSubsystem(Subsystem):
    options_scope = "lambda-run"
    help = help_text(
        """
        How `run` invokes a `lambda_function` locally: `./pants run path/to:function --
        event.json` (or `-`, or nothing, to read the event from standard input; relative paths
        are relative to the build root).

        It packages the function, extracts the zip into a fresh read-only directory (the task
        root), and calls the handler in a fresh CPython of the runtime's version (pyenv's
        `versions/3.X.*` first, then /usr/local/bin, /usr/bin, /bin) in isolated mode, with the
        module search path of the Lambda Python runtime (the task root, the layer directories,
        the standard library; no site-packages of the local interpreter), a context object, and
        the `timeout` of the target. Standard output gets the handler's return value as JSON, or
        on a function error Lambda's error payload (`errorMessage`, `errorType`, `requestId`,
        `stackTrace`) and exit status 1 (2 when nothing could be invoked: a bad event, no
        interpreter, a foreign architecture); what the handler prints goes to standard error, as it
        would go to the function's log. An `arm64` function is refused on an x86_64 machine (and
        the reverse): no emulator is used. The memory size is reported, not enforced.
        """
    ) + "\n\n" + invoke.ENVIRONMENT_HELP

    region = StrOption(
        default=invoke.DEFAULT_REGION,
        help="The region the handler sees in `AWS_REGION`, `AWS_DEFAULT_REGION` and its function ARN.",
    )


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
    invoker_path = f"{_RUN_DIR}/invoke.py"
    # Each layer's zip, extracted by the invoker under /opt as Lambda does.
    layer_zips = await MultiGet(
        Get(DigestEntries, Digest, layer.archive) for layer in function_layers.layers
    )
    layer_files = [
        FileEntry(f"{_RUN_DIR}/layers/{index}/{Path(entry.path).name}", entry.file_digest)
        for index, (entry,) in enumerate(layer_zips)
    ]
    digest = await Get(
        Digest,
        CreateDigest(
            [
                FileEntry(archive_path, archive.file_digest),
                FileContent(invoker_path, _INVOKER.read_bytes()),
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
            f"{{chroot}}/{invoker_path}",
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
            invoke.function_name_for(field_set.address.spec),
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
