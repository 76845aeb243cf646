"""`lambda-zip image`: the same parts as `package`, as layers of a Lambda container image on a
base image, written as an OCI image layout (no Pants imports, no Docker): the parts are built
here, and the image step (`image_outputs.write_image`) is the one the Pants rules run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from lambda_rules import image_outputs
from lambda_rules.lambda_zip.local_build import (
    PackageError,
    PackageRequest,
    build_parts,
    sbom_template,
)


def build_image(request: PackageRequest, base: str, tag: str) -> image_outputs.ImageResult:
    """The image layout at `request.output` (a folder) and `<output>.json`, `<output>.cdx.json`
    beside it. `base` is the base's layout, optionally pinned: `DIR@sha256:...`."""
    if not request.handler:
        raise PackageError(f"{request.name}: an image needs --handler (module.function)")
    if request.layers:
        raise PackageError(
            f"{request.name}: a Lambda container image cannot use layers; drop --layer and "
            "require what the layer holds (the image has room for it)"
        )
    layout, pinned = image_outputs.image.parse_base(base)
    # Checked before any wheel is fetched: a wrong base is the cheapest mistake to report.
    image_outputs.image.read_base(layout, request.platform.architecture, pinned)
    with tempfile.TemporaryDirectory(prefix="lambda-zip-image-") as scratch:
        built = build_parts(request, Path(scratch))
        action = image_outputs.ImageAction(
            name=request.name,
            platform=request.platform,
            handler=request.handler,
            distributions=built.planned.distributions,
            parts=tuple((unit.label, part) for unit, part in zip(built.planned.units, built.parts)),
            first_party=built.first_party,
            base=layout,
            sbom_template=sbom_template(request, built),
            compiled_by=built.compiled_by,
            tag=tag,
            output=request.output,
        )
        result = image_outputs.write_image(action)
    return image_outputs.ImageResult(
        result.manifest_digest, result.layers, (*built.planned.warnings, *result.warnings)
    )
