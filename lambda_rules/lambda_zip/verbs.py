"""The lambda-zip verbs the Pants rules run in their sandboxes: the zipper's (build, repack,
merge, diff, hash) and `sbom`.

It sits above the zipper, which imports nothing of ours, and above the SBOM writer; its files are
`lambda_rules.sandbox_files.TOOL`, so what it imports decides the cache key of every part. The
`lambda-zip` command that `pip install` puts on PATH (`lambda_rules.lambda_zip.main`) adds
`package`, `image` and `verify`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from lambda_rules.errors import LambdaRulesError
from lambda_rules.facts import ARCHITECTURES, DEFAULT_ARCHITECTURE, RUNTIMES, Kind
from lambda_rules.platforms import lambda_platform
from lambda_rules.sbom_identity import SbomError
from lambda_rules.zipper import cli as zipper_cli
from lambda_rules.zipper.output import replaced_atomically
from lambda_rules.zipper.timestamps import parse_epoch, timestamp_from_environment

# Errors caused by the input (and the zipper's ZipError, which run() always handles): one line
# on stderr, exit status 2.
USER_ERRORS: tuple[type[Exception], ...] = (LambdaRulesError,)


def main(argv: Sequence[str] | None = None) -> int:
    parser, arguments = zipper_cli.new_parser(TOOL_VERBS, argv)
    return zipper_cli.run(parser.parse_args(arguments), USER_ERRORS)


def _image_base_arguments(base: argparse.ArgumentParser) -> None:
    base.add_argument("base", metavar="DIR@sha256:...")
    base.add_argument("--architecture", required=True, choices=list(ARCHITECTURES))
    base.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    base.set_defaults(run=_run_image_base)


def _image_layout_arguments(layout: argparse.ArgumentParser) -> None:
    layout.add_argument("action", type=Path, metavar="ACTION.json")
    layout.set_defaults(run=_run_image_layout)


def _run_image_base(args: argparse.Namespace) -> int:
    from lambda_rules import image

    layout, pinned = image.parse_base(args.base)
    if pinned is None:
        raise image.ImageError(
            f"base {args.base}: pin it by digest, `{args.base}@sha256:...` (`skopeo inspect "
            f"oci:{args.base}` prints the digest)"
        )
    image.copy_base(image.read_base(layout, args.architecture, pinned), args.output)
    return 0


def _run_image_layout(args: argparse.Namespace) -> int:
    from lambda_rules import image_outputs

    action = image_outputs.ImageAction.from_json(args.action.read_text(encoding="utf-8"))
    result = image_outputs.write_image(action)
    print(f"{action.output}  {result.manifest_digest}")
    return 0


def _sbom_arguments(sbom: argparse.ArgumentParser) -> None:
    sbom.add_argument(
        "archives",
        metavar="ARCHIVE.zip",
        type=Path,
        nargs="*",
        help="the archive; with --template, the parts it is merged from, or directories laid out "
        "as it is (its staged distributions; none: no distributions)",
    )
    sbom.add_argument(
        "--template",
        action="store_true",
        help="read the distributions from all ARCHIVE.zip and write the SBOM of the archive they "
        f"merge into, with {'0' * 8}… for its SHA-256 and <name> for its name (the Pants rules "
        "fill both in; takes no --name)",
    )
    sbom.add_argument(
        "--lockfile", metavar="LOCK", type=Path, required=True, help="the Pants/pex lockfile"
    )
    sbom.add_argument(
        "--name",
        help="the root component's name (the target address); required without --template",
    )
    sbom.add_argument("--kind", choices=[kind.value for kind in Kind], default=Kind.FUNCTION.value)
    sbom.add_argument("--runtime", required=True, help=f"the Lambda runtime: {', '.join(RUNTIMES)}")
    sbom.add_argument(
        "--architecture",
        default=DEFAULT_ARCHITECTURE,
        help=f"{' or '.join(ARCHITECTURES)} (default {DEFAULT_ARCHITECTURE})",
    )
    sbom.add_argument(
        "--layer",
        action="append",
        default=[],
        metavar="NAME=SHA256",
        help="a layer the function uses, by its archive's SHA-256 (repeatable)",
    )
    sbom.add_argument(
        "--layer-archive",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a layer the function uses, by its archive: requirements it bundles become edges "
        "(repeatable)",
    )
    sbom.add_argument(
        "--timestamp",
        metavar="EPOCH",
        help="Unix time for the SBOM, in UTC (default: $SOURCE_DATE_EPOCH, else none)",
    )
    sbom.add_argument("-o", "--output", metavar="OUT.cdx.json", type=Path, required=True)
    sbom.set_defaults(run=_run_sbom)


def _run_sbom(args: argparse.Namespace) -> int:
    # Imported here: the zipper's verbs work without cyclonedx-python-lib installed.
    try:
        from lambda_rules import sbom
    except ModuleNotFoundError as error:
        raise SbomError(
            f"sbom needs the {error.name} module; install 3rdparty/python/sbom-requirements.txt"
        ) from None
    platform = lambda_platform(args.runtime, args.architecture)
    layers = [sbom.LayerReference(name, sha256) for name, sha256 in pairs(args.layer, "--layer")]
    layers += [
        sbom.layer_reference_from_archive(name, path)
        for name, path in pairs(args.layer_archive, "--layer-archive")
    ]
    timestamp = (
        parse_epoch(args.timestamp, "--timestamp")
        if args.timestamp is not None
        else timestamp_from_environment(os.environ)
    )
    kind = Kind(args.kind)
    if args.template:
        if args.name is not None:
            raise SbomError("sbom --template leaves the name to whoever completes it; drop --name")
        document = sbom.generate_sbom_template(
            args.archives,
            args.lockfile,
            platform=platform,
            kind=kind,
            layers=layers,
            source_date_epoch=timestamp,
        )
    elif len(args.archives) != 1:
        raise SbomError("sbom takes one ARCHIVE.zip, or the parts of one with --template")
    elif not args.name:
        raise SbomError("sbom needs --name, the root component's name (the target address)")
    else:
        document = sbom.generate_sbom(
            args.archives[0],
            args.lockfile,
            name=args.name,
            platform=platform,
            kind=kind,
            layers=layers,
            source_date_epoch=timestamp,
        )
    with replaced_atomically(args.output) as f:
        f.write(document.encode("utf-8"))
    print(f"{args.output}  {len(document.encode('utf-8'))} bytes")
    return 0


# The zipper's verbs, `sbom`, and the image step's two actions, as the Pants rules run them.
TOOL_VERBS = (
    *zipper_cli.VERBS,
    zipper_cli.Verb(
        "sbom",
        _sbom_arguments,
        help="write a CycloneDX SBOM of a built archive",
        description="Write a reproducible CycloneDX 1.6 JSON SBOM of ARCHIVE.zip: the "
        "distributions it really bundles (from their .dist-info), each with the SHA-256 of its "
        "wheel from LOCK, its declared license and its dependencies on the Lambda platform. The "
        "serial number derives from the archive's SHA-256; the timestamp is --timestamp or "
        "SOURCE_DATE_EPOCH, else absent. Needs cyclonedx-python-lib "
        "(3rdparty/python/sbom-requirements.txt).",
    ),
    zipper_cli.Verb(
        "image-base",
        _image_base_arguments,
        help="copy a base image's OCI layout for one architecture, checked against its pin",
    ),
    zipper_cli.Verb(
        "image-layout",
        _image_layout_arguments,
        help="write an image layout, its manifest and SBOM from an image action",
    ),
)


def pairs(values: Sequence[str], option: str) -> list[tuple[str, str]]:
    found = []
    for value in values:
        name, equals, rest = value.partition("=")
        if not equals or not name or not rest:
            raise SbomError(f"{option} takes NAME=VALUE, got {value!r}")
        found.append((name, rest))
    return found


if __name__ == "__main__":
    sys.exit(main())
