"""The `lambda_function` target and its fields."""

from __future__ import annotations

from typing import ClassVar

from pants.backend.python.target_types import PythonResolveField
from pants.backend.python.util_rules.faas import PythonFaaSDependencies, PythonFaaSHandlerField
from pants.core.goals.package import OutputPathField
from pants.engine.addresses import Address
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    BoolField,
    Dependencies,
    IntField,
    InvalidFieldException,
    StringField,
    StringSequenceField,
    Target,
)
from pants.util.strutil import help_text

from lambda_rules import facts

_LAYER_PYTHON = f"{facts.LAYER_ROOT}/{facts.LAYER_PYTHON_DIR}"
_UNZIPPED_LIMIT_MB = facts.UNZIPPED_LIMIT_BYTES // (1024 * 1024)


def _runtimes_by_os() -> str:
    """'python3.9 to python3.11 run on Amazon Linux 2 (glibc 2.26), ...', from the facts."""
    groups: dict[tuple[str, tuple[int, int]], list[str]] = {}
    for runtime in facts.RUNTIMES.values():
        groups.setdefault((runtime.os_release, runtime.glibc), []).append(runtime.name)
    return ", ".join(
        f"{names[0]}{f' to {names[-1]}' if len(names) > 1 else ''} run on {os_release} "
        f"(glibc {glibc[0]}.{glibc[1]})"
        for (os_release, glibc), names in groups.items()
    )


class LambdaFunctionHandlerField(PythonFaaSHandlerField):
    help = help_text(
        """
        The function Lambda calls, as `file.py:function` (relative to this BUILD file) or as
        `dotted.module:function`. It is checked when packaging: the module must be in the
        package and must define the function.
        """
    )


class LambdaFunctionDependencies(PythonFaaSDependencies):
    help = help_text(
        """
        Addresses of code and requirements the function needs beyond what dependency inference
        finds from the handler's imports.
        """
    )


def _lifecycles() -> str:
    """'AWS deprecates python3.9 on 2025-12-15; ...', from the facts."""
    return "; ".join(
        runtime.lifecycle.describe(runtime.name)
        for runtime in facts.RUNTIMES.values()
        if runtime.lifecycle is not None
    )


class LambdaRuntimeField(StringField):
    alias = "runtime"
    required = True
    value: str
    valid_choices = tuple(facts.RUNTIMES)
    help = help_text(
        f"""
        The Lambda runtime identifier, e.g. `python3.12`. It selects the CPython version of the
        wheels and the glibc they may need: {_runtimes_by_os()}. Packaging for a runtime with an
        announced end warns and still builds: {_lifecycles()}.
        """
    )


_ARCHITECTURE_NAMES = " or ".join(f"`{name}`" for name in facts.ARCHITECTURES)


class LambdaArchitectureField(StringField):
    alias = "architecture"
    default = facts.DEFAULT_ARCHITECTURE
    value: str
    valid_choices = tuple(facts.ARCHITECTURES)
    help = help_text(
        f"""
        The instruction set the function runs on: {_ARCHITECTURE_NAMES}. Native wheels
        are chosen for it; no local interpreter or container of that architecture is needed.
        """
    )


class LambdaFunctionOutputPathField(OutputPathField):
    help = help_text(
        """
        Where the deployment package goes, relative to the dist directory. Beside it go a copy
        named by the first 16 hex digits of its sha256 in `<name>.cas/` (cleared by each
        `package`, so it holds the current build's copy only), a `.json` manifest with the
        sha256 (hex and Terraform's `filebase64sha256` form), sizes, runtime, architecture,
        handler, layers and bundled distributions, and a CycloneDX SBOM `<name>.cdx.json`.

        If unset, `path.to.dir/target_name.zip`.
        """
    )


class _LambdaBoundedIntField(IntField):
    """An integer Lambda bounds: a value outside `bounds` is an error."""

    bounds: ClassVar[facts.Bounds]

    @classmethod
    def compute_value(cls, raw_value: int | None, address: Address) -> int:
        value = super().compute_value(raw_value, address)
        assert value is not None, "the field has a default"
        if not cls.bounds.minimum <= value <= cls.bounds.maximum:
            raise InvalidFieldException(
                f"The `{cls.alias}` field of {address} must be {cls.bounds.describe()}, "
                f"not {value}."
            )
        return value


class LambdaTimeoutField(_LambdaBoundedIntField):
    alias = "timeout"
    bounds = facts.TIMEOUT
    default = bounds.default
    help = help_text(
        f"""
        Seconds an invocation may run, {bounds.minimum} to {bounds.maximum} (default
        {bounds.default}, as Lambda's). `run` stops a
        handler that runs longer and reports `Task timed out after N.00 seconds`; the handler's
        `context.get_remaining_time_in_millis()` counts down from it.
        """
    )


class LambdaMemorySizeField(_LambdaBoundedIntField):
    alias = "memory_size"
    bounds = facts.MEMORY_SIZE
    default = bounds.default
    help = help_text(
        f"""
        Memory in MB, {bounds.minimum} to {bounds.maximum} (Lambda's range). `run` reports it
        to the handler
        (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, `context.memory_limit_in_mb`) but does not enforce it.
        """
    )


class LambdaExtraEnvVarsField(StringSequenceField):
    alias = "extra_env_vars"
    help = help_text(
        """
        Extra environment variables for the handler when invoked locally with `run`, as
        `NAME=value`, or `NAME` to copy it from the environment `pants run` was started in (only
        when set there), e.g. `["STAGE=dev", "AWS_PROFILE"]`. They are not part of the package:
        set the deployed function's variables with your deployment tool. The variables the
        runtime sets (`AWS_REGION`, `LAMBDA_TASK_ROOT`, `_HANDLER`, ...) cannot be overridden.
        """
    )


class LambdaCompileBytecodeField(BoolField):
    alias = "compile_bytecode"
    default = False
    help = help_text(
        f"""
        Ship `__pycache__/*.pyc` next to every `.py`, compiled by a CPython of exactly the
        runtime's version in PEP 552 unchecked-hash mode, byte-for-byte reproducible, with code
        paths as Lambda loads them (`{facts.TASK_ROOT}/...`, or `{_LAYER_PYTHON}/...` in a layer).
        Lambda's
        file system is read-only, so without them every cold start compiles every imported module
        again: measured with a numpy + pandas function, importing the handler took 0.24x the time
        (2.95 s to 0.71 s). The cost is size: the README example grows from 2.72 to 3.67 MB
        zipped and from 7.5 to 9.7 MB unzipped (see bench/RESULTS.md). Needs that CPython on this
        machine, found as Pants finds interpreters (`[python-bootstrap].search_path`, pyenv); the
        manifest records its exact version as `bytecode_compiled_by`.
        """
    )


class LambdaLayersField(StringSequenceField):
    alias = "layers"
    help = help_text(
        f"""
        Addresses of `lambda_layer` targets (at most {facts.MAX_LAYERS_PER_FUNCTION}) the function
        is deployed with. The package leaves
        out every distribution a layer holds at the same version, and every first-party file a
        layer holds with the same content. A layer for another runtime or architecture, or one
        holding another version of a distribution the function needs, is an error. The
        function's manifest lists its layers (address, sha256, filebase64sha256), and Lambda's
        {_UNZIPPED_LIMIT_MB} MB unzipped limit is checked for the function and its layers together.
        """
    )


class LambdaExcludeDistributionsField(StringSequenceField):
    alias = "exclude_distributions"
    help = help_text(
        """
        Distributions (any spelling: `Boto3`, `python_dateutil`) to leave out of the package,
        together with their own dependencies that nothing else in the package needs. The Lambda
        Python runtime provides boto3, botocore and s3transfer (and their dependencies), so
        `exclude_distributions=["boto3"]` keeps the AWS SDK out of the package while code can
        still import it. A name the package does not hold is an error, so a typo never passes.
        """
    )


# What a function is, whether it ships as a zip or as an image.
_FUNCTION_FIELDS = (
    *COMMON_TARGET_FIELDS,
    LambdaFunctionDependencies,
    LambdaFunctionHandlerField,
    LambdaRuntimeField,
    LambdaArchitectureField,
    PythonResolveField,
    LambdaTimeoutField,
    LambdaMemorySizeField,
    LambdaExtraEnvVarsField,
    LambdaCompileBytecodeField,
    LambdaExcludeDistributionsField,
)


class LambdaFunctionTarget(Target):
    alias = "lambda_function"
    core_fields = (*_FUNCTION_FIELDS, LambdaFunctionOutputPathField, LambdaLayersField)
    help = help_text(
        """
        A Python AWS Lambda function, packaged by `package` as a byte-for-byte reproducible zip.

        The package holds the function's first-party sources, resources and files (source roots
        stripped) and its third-party distributions, resolved from the lockfile for the Lambda
        platform (runtime and architecture), laid out flat so that they import from the zip root.
        pip, setuptools, wheel, console scripts and bytecode are left out. The same inputs give
        the same bytes on every machine, so deployment tools that compare hashes see no change
        when nothing changed.
        """
    )


class LambdaLayerDependencies(Dependencies):
    help = help_text(
        """
        What the layer holds: requirements (`python_requirement` targets) and, optionally,
        first-party sources, resources and files. Nothing is inferred: a layer has no handler.
        """
    )


class LambdaLayerOutputPathField(OutputPathField):
    help = help_text(
        """
        Where the layer's zip goes, relative to the dist directory; beside it, as for
        `lambda_function`, a content-addressed copy, a `.json` manifest and a CycloneDX SBOM.

        If unset, `path.to.dir/target_name.zip`.
        """
    )


class LambdaLayerTarget(Target):
    alias = "lambda_layer"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        LambdaLayerOutputPathField,
        LambdaLayerDependencies,
        LambdaRuntimeField,
        LambdaArchitectureField,
        PythonResolveField,
        LambdaExcludeDistributionsField,
        LambdaCompileBytecodeField,
    )
    help = help_text(
        f"""
        A Lambda layer of Python distributions (and optionally first-party code), packaged by
        `package` as a byte-for-byte reproducible zip with everything under
        `{facts.LAYER_PYTHON_DIR}/`, where the Python runtime finds it (`{_LAYER_PYTHON}`).
        Functions name it in their `layers` field and
        leave out what it holds; a layer shared by many functions is built once.
        """
    )


class LambdaImageOutputPathField(OutputPathField):
    help = help_text(
        """
        Where the image's OCI layout (a folder) goes, relative to the dist directory; beside it
        go `<name>.json`, a manifest with the image, base and layer digests, and a CycloneDX SBOM
        `<name>.cdx.json`. Push it with `skopeo copy oci:dist/<name>:latest
        docker://REGISTRY/REPO:TAG`.

        If unset, `path.to.dir/target_name`.
        """
    )


class LambdaImageTarget(Target):
    alias = "lambda_image"
    core_fields = (*_FUNCTION_FIELDS, LambdaImageOutputPathField)
    help = help_text(
        f"""
        A Python AWS Lambda function as a container image, for functions past the
        {_UNZIPPED_LIMIT_MB} MB of a zip (up to {facts.IMAGE_LIMIT_BYTES >> 30} GiB): the same
        files as `lambda_function` would package, as byte-for-byte reproducible layers under
        `{facts.TASK_ROOT}` on a base image from `[lambda-base-images].layouts`, written by
        `package` as an OCI image layout without Docker. Each large distribution has a layer of
        its own and the small ones share one, so functions on the same requirements share those
        layers in a registry; the first-party code is the top layer, so an edit changes only it.
        """
    )
