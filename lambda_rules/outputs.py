"""What is written beside an archive, decided once for both front ends: its content-addressed
name, the manifest and the completed SBOM, after Lambda's size limits are checked.

The Pants rules and `lambda-zip package` both merge an archive, write an SBOM template from its
distribution parts, and hand the results here. No Pants imports.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

from lambda_rules import facts, layers, manifest, sbom_identity
from lambda_rules.facts import Kind
from lambda_rules.platforms import LambdaPlatform
from lambda_rules.units import Distribution
from lambda_rules.zipper.summary import ZipTotals


@dataclass(frozen=True)
class PackageOutputs:
    """Where each file goes (relative to the dist directory) and the two documents' bytes."""

    paths: manifest.ArtifactPaths
    manifest: bytes
    sbom: bytes
    warnings: tuple[str, ...]


def package_outputs(
    *,
    what: str,
    kind: Kind,
    platform: LambdaPlatform,
    output_path: str,
    summary: ZipTotals,
    handler: str | None,
    distributions: Sequence[Distribution],
    sbom_template: str,
    layer_contents: Sequence[layers.LayerContents] = (),
    bytecode_compiled_by: str | None = None,
) -> PackageOutputs:
    """The manifest and SBOM of the archive `summary` describes, written as `output_path`.
    Raises when the package (with its layers) unzips past Lambda's limit."""
    if layer_contents:
        layers.combined_size_check(what, summary.unzipped_size, layer_contents)
    else:
        manifest.check_unzipped_size(summary.unzipped_size, what=what)
    lifecycle = facts.lifecycle_warning(what, platform.runtime)
    warnings = (
        *(f"{what}: {w}" for w in manifest.size_warnings(summary.zipped_size)),
        *((lifecycle,) if lifecycle else ()),
    )
    paths = manifest.ArtifactPaths.for_output(output_path, summary.sha256_hex)
    sbom = sbom_identity.complete_sbom(sbom_template, summary.sha256_hex, what).encode()
    document = manifest.LambdaManifest(
        artifact=paths.relative_to_manifest(paths.archive),
        content_addressed_artifact=paths.relative_to_manifest(paths.content_addressed),
        sha256_hex=summary.sha256_hex,
        sha256_base64=summary.sha256_base64,
        zipped_size=summary.zipped_size,
        unzipped_size=summary.unzipped_size,
        entry_count=summary.entry_count,
        runtime=platform.runtime.name,
        architecture=platform.architecture,
        handler=handler,
        distributions=distributions,
        sbom=paths.relative_to_manifest(paths.sbom),
        sbom_sha256=hashlib.sha256(sbom).hexdigest(),
        kind=kind,
        bytecode_compiled_by=bytecode_compiled_by,
        layers=tuple(layers.layer_manifest_entries(layer_contents)),
    )
    return PackageOutputs(paths, document.to_json().encode(), sbom, warnings)
