"""Image: a `lambda_image`'s parts -> layers on a base image -> an OCI layout, manifest and SBOM.

The parts are a function's (stage, parts, and the first-party code zipped by the merge step).
Two processes follow: the base, copied from its layout on this machine through its pin
(`image-base`), and the image step written once in `image_outputs` (`image-layout`, the same
action `lambda-zip image` runs), whose inputs are the parts and the base's content: its cache
key holds no path of this machine.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pants.backend.python.subsystems.setup import PythonSetup
from pants.base.build_root import BuildRoot
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact
from pants.engine.addresses import Address
from pants.engine.fs import (
    CreateDigest,
    Digest,
    DigestContents,
    DigestSubset,
    FileContent,
    MergeDigests,
    PathGlobs,
    RemovePrefix,
)
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.logging import LogLevel

from lambda_rules import actions, contents, facts, image, image_outputs
from lambda_rules.facts import Kind
from lambda_rules.platforms import LambdaPlatform
from lambda_rules.plugin.field_sets import LambdaImageFieldSet
from lambda_rules.plugin.steps.assemble import (
    DeterministicZip,
    MergeZipPartsRequest,
    SbomTemplate,
    SbomTemplateRequest,
    UniqueOutputPath,
    UniqueOutputPathRequest,
)
from lambda_rules.plugin.steps.cache import linked_directories
from lambda_rules.plugin.steps.parts import (
    PART_FILE,
    BytecodeCompiler,
    BytecodeCompilerRequest,
    PreparedUnit,
    PrepareUnitRequest,
    ZipParts,
    ZipPartsRequest,
)
from lambda_rules.plugin.steps.stage import StagedLambda, StageLambdaRequest
from lambda_rules.plugin.steps.tool import LambdaZipTool
from lambda_rules.plugin.steps.verify import VerifiedLambda, VerifyLambdaRequest
from lambda_rules.plugin.subsystems.lambda_base_images import LambdaBaseImagesSubsystem, base_key
from lambda_rules.plugin.subsystems.lambda_zip import LambdaZipSubsystem
from lambda_rules.units import Distribution

logger = logging.getLogger(__name__)

# Sandbox paths: the base layout, the parts (a directory each), the first-party part, the action.
_BASE_DIR = "__lambda_base"
_PARTS_DIR_PREFIX = "__lambda_part_"
_FIRST_PARTY = "__lambda_first_party.zip"
_ACTION = "__lambda_image_action.json"


@dataclass(frozen=True)
class BaseImageRequest:
    address: Address
    platform: LambdaPlatform


@dataclass(frozen=True)
class BaseImageLayout:
    """The base alone as an OCI layout at the digest's root, every blob checked against its pin."""

    digest: Digest


@dataclass(frozen=True)
class BuiltLambdaImage:
    package: BuiltPackage
    # The layout's folder in `package.digest` (the dist path).
    layout: str
    image_digest: str


def _failure(address: Address, result: FallibleProcessResult, where: str) -> image.ImageError:
    """The tool's one-line error, naming the target (and the option, for the base)."""
    lines = result.stderr.decode("utf-8", "replace").strip().splitlines() or ["failed"]
    message = lines[-1].removeprefix("lambda-zip: error: ")
    return image.ImageError(f"{address}: {where}{message}")


@rule(desc="Copy a Lambda base image", level=LogLevel.DEBUG)
async def import_base_image(
    request: BaseImageRequest,
    subsystem: LambdaBaseImagesSubsystem,
    tool: LambdaZipTool,
    build_root: BuildRoot,
) -> BaseImageLayout:
    key = base_key(request.platform)
    value = subsystem.layouts.get(key)
    if value is None:
        raise image.ImageError(
            f"{request.address}: no base image for {key}: set `[lambda-base-images].layouts` to "
            f'{{"{key}": "DIR@sha256:..."}}, an OCI layout copied once with `skopeo copy '
            f"docker://public.ecr.aws/lambda/python:{request.platform.runtime.python_name[6:]}"
            "@sha256:... oci:DIR`"
        )
    layout = Path(os.path.expanduser(value))
    reference = str(layout if layout.is_absolute() else Path(build_root.path) / layout)
    result = await Get(
        FallibleProcessResult,
        Process,
        tool.process(
            argv=(
                "image-base",
                reference,
                "--architecture",
                request.platform.architecture,
                "-o",
                _BASE_DIR,
            ),
            output_directories=(_BASE_DIR,),
            description=f"Copy the base image {value}",
            level=LogLevel.DEBUG,
        ),
    )
    if result.exit_code != 0:
        raise _failure(request.address, result, f"`[lambda-base-images].layouts` {key!r}: ")
    return BaseImageLayout(await Get(Digest, RemovePrefix(result.output_digest, _BASE_DIR)))


@dataclass(frozen=True)
class ImageParts:
    """The function's parts, as `lambda_function` makes them, and its first-party code zipped."""

    staged: StagedLambda
    parts: ZipParts
    first_party: Digest | None
    compiled_by: str | None


@rule(desc="Build Lambda image parts", level=LogLevel.DEBUG)
async def image_parts(field_set: LambdaImageFieldSet) -> ImageParts:
    address, platform = field_set.address, field_set.platform
    staged = await Get(
        StagedLambda,
        StageLambdaRequest(
            address,
            platform,
            tuple(field_set.exclude_distributions.value or ()),
            handler=field_set.handler,
        ),
    )
    contents.check_not_empty(
        str(address), Kind.FUNCTION, bool(staged.all_units), fix="give it `dependencies`."
    )
    bytecode = None
    if field_set.compile_bytecode.value:
        bytecode = await Get(BytecodeCompiler, BytecodeCompilerRequest(address, platform))
        bytecode = dataclasses.replace(bytecode, prefix=actions.load_root(Kind.FUNCTION))
    parts = await Get(ZipParts, ZipPartsRequest(staged.units, bytecode))
    first_party, compiled_by = None, None
    if staged.first_party is not None:
        tree = await Get(PreparedUnit, PrepareUnitRequest(staged.first_party, bytecode))
        zipped = await Get(
            DeterministicZip,
            MergeZipPartsRequest((), tree, _FIRST_PARTY, f"Zip the code of {address}"),
        )
        first_party, compiled_by = zipped.digest, tree.compiled_by
    compiled_by = next((p.compiled_by for p in parts.parts if p.compiled_by), compiled_by)
    return ImageParts(staged, parts, first_party, compiled_by)


async def _built_image(
    digest: Digest, layout: str, manifest_path: str, sbom_path: str
) -> BuiltLambdaImage:
    """What `package` writes to dist/, and the lines it prints for each file."""
    (manifest,) = await Get(DigestContents, DigestSubset(digest, PathGlobs([manifest_path])))
    document = image_outputs.ImageManifest.from_json(manifest.content)
    package = BuiltPackage(
        digest,
        artifacts=(
            BuiltPackageArtifact(
                layout,
                (
                    f"  image {document.image_digest}  ({len(document.layers)} layers of ours "
                    f"on base {document.base_digest[:19]}…, handler {document.handler})",
                ),
            ),
            BuiltPackageArtifact(manifest_path, ("  manifest",)),
            BuiltPackageArtifact(sbom_path, ("  CycloneDX SBOM",)),
        ),
    )
    return BuiltLambdaImage(package, layout, document.image_digest)


@rule(desc="Build Lambda image", level=LogLevel.DEBUG)
async def build_lambda_image(
    field_set: LambdaImageFieldSet, python_setup: PythonSetup, subsystem: LambdaZipSubsystem
) -> BuiltLambdaImage:
    address, platform = field_set.address, field_set.platform
    output_path = field_set.output_path.value_or_default(file_ending=None)
    _, base, built, tool = await MultiGet(
        Get(UniqueOutputPath, UniqueOutputPathRequest(address, output_path)),
        Get(BaseImageLayout, BaseImageRequest(address, platform)),
        Get(ImageParts, LambdaImageFieldSet, field_set),
        Get(LambdaZipTool),
    )
    resolve = field_set.resolve.normalized_value(python_setup)
    sbom_template = await Get(
        SbomTemplate, SbomTemplateRequest(built.staged.units, Kind.FUNCTION, platform, resolve)
    )
    part_dirs = linked_directories(_PARTS_DIR_PREFIX, [p.digest for p in built.parts.parts])
    action = image_outputs.ImageAction(
        name=str(address),
        platform=platform,
        handler=built.staged.handler or "",
        distributions=built.staged.distributions,
        parts=tuple(
            (_label(unit.distribution), Path(directory, PART_FILE))
            for unit, directory in zip(built.staged.units, part_dirs)
        ),
        first_party=None if built.first_party is None else Path(_FIRST_PARTY),
        base=Path(_BASE_DIR),
        sbom_template=sbom_template.content,
        compiled_by=built.compiled_by,
        tag="latest",
        output=Path(output_path),
    )
    inputs = [await Get(Digest, CreateDigest([FileContent(_ACTION, action.to_json().encode())]))]
    if built.first_party is not None:
        inputs.append(built.first_party)
    manifest_path = str(image_outputs.beside(action.output, ".json"))
    sbom_path = str(image_outputs.beside(action.output, ".cdx.json"))
    result = await Get(
        FallibleProcessResult,
        Process,
        tool.process(
            argv=("image-layout", _ACTION),
            input_digest=await Get(Digest, MergeDigests(inputs)),
            immutable_input_digests={**part_dirs, _BASE_DIR: base.digest},
            output_directories=(output_path,),
            output_files=(manifest_path, sbom_path),
            description=f"Build the image of {address} ({platform.description})",
            level=LogLevel.DEBUG,
        ),
    )
    if result.exit_code != 0:
        raise _failure(address, result, "")
    lifecycle = facts.lifecycle_warning(str(address), platform.runtime)
    if lifecycle:
        logger.warning(lifecycle)
    if subsystem.verify:
        await Get(
            VerifiedLambda,
            VerifyLambdaRequest(
                address, result.output_digest, output_path, built.staged.sources, resolve
            ),
        )
    return await _built_image(result.output_digest, output_path, manifest_path, sbom_path)


def _label(distribution: Distribution | None) -> str:
    assert distribution is not None, "a distribution unit names its distribution"
    return f"{distribution.name} {distribution.version}"


def rules():
    return collect_rules()
