"""The `lambda-zip` command: the tool's verbs (`verbs.py`: build, repack, merge, diff, hash, sbom)
and `package` and `verify`, which run the pipeline's steps without Pants.
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path
from typing import Sequence

from lambda_rules.facts import ARCHITECTURES, DEFAULT_ARCHITECTURE, RUNTIMES, Kind
from lambda_rules.lambda_zip import verbs
from lambda_rules.lambda_zip.local_build import PackageError, PackageRequest, package
from lambda_rules.lambda_zip.local_cache import default_cache_dir
from lambda_rules.platforms import lambda_platform
from lambda_rules.zipper import cli as zipper_cli
from lambda_rules.zipper.compress import DEFAULT_LEVEL


def main(argv: Sequence[str] | None = None) -> int:
    # The modules a run needs are loaded: out of the cyclic collector's way, as the Pants goals
    # freeze Pants' heap (plugin/heap.py). The run's collections, and the one at exit, then skip
    # them: about 7 ms of a warm `package`'s 120.
    gc.freeze()
    parser, arguments = zipper_cli.new_parser(VERBS, argv)
    # Sources may follow the options (`verify A.zip --lockfile L --source-root fn fn/app.py`),
    # which argparse does not take for a positional list once options came between.
    args, extra = parser.parse_known_args(arguments)
    if extra:
        if getattr(args, "sources", None) is None or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.sources = [*args.sources, *map(Path, extra)]
    return zipper_cli.run(args, verbs.USER_ERRORS)


_PACKAGE_DESCRIPTION = """\
Package a Python AWS Lambda function (or a layer) without Pants: the same steps and the same bytes
as `pants package` on a `lambda_function` with the same settings. Requirements are resolved from a
lock for the Lambda platform (wheels only, no Docker); each locked wheel is fetched once into
--cache-dir (checked against the lock's sha256), laid out and compressed once into a part kept
there and reused by every later run that pins the same wheel; the parts are merged without
recompressing. Writes OUT.zip, a content-addressed copy
in OUT.cas/, the manifest OUT.json (sha256, Terraform's filebase64sha256, sizes, distributions)
and a CycloneDX SBOM OUT.cdx.json, all or nothing. Entry times are 1980-01-01 whatever
SOURCE_DATE_EPOCH says, as under Pants.

Requirements need a lock: without one the result would be only as reproducible as the versions
that resolve today, so lambda-zip refuses. Any of these, told apart by content:
  uv lock                                  (uv.lock, in a uv project)
  uv export --format pylock.toml -o pylock.toml      (PEP 751; also `pip lock`)
  pants generate-lockfiles                 (or `pex3 lock create --style universal ...`)
"""


_IMAGE_DESCRIPTION = """\
The function `package` would build, as a Lambda container image on a base image, without Docker:
the same parts as layers under /var/task (each large distribution alone, the small ones together,
the function's code last, so an edit changes only the top layer), each a canonical tar gzipped by
the pinned libdeflate. Writes an OCI image layout at DIR (one single-platform manifest, as Lambda
requires), DIR.json (image, base and layer digests) and DIR.cdx.json. The base is an OCI layout
copied once from AWS's image, pinned by digest:
  skopeo copy docker://public.ecr.aws/lambda/python:3.12@sha256:... oci:base:3.12
Push with `skopeo copy oci:DIR:latest docker://REGISTRY/REPO:TAG`.
"""


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sources", metavar="SOURCE", type=Path, nargs="*", help="first-party files or folders"
    )
    parser.add_argument(
        "--source-root",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="the folder package paths start from (default: the current one)",
    )


def _package_arguments(package_parser: argparse.ArgumentParser) -> None:
    package_parser.add_argument(
        "--kind", choices=[k.value for k in Kind], default=Kind.FUNCTION.value
    )
    _add_inputs(package_parser)
    _add_package_options(package_parser)
    package_parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.zip")
    package_parser.set_defaults(run=_run_package)


def _image_arguments(image_parser: argparse.ArgumentParser) -> None:
    _add_inputs(image_parser)
    _add_package_options(image_parser)
    add = image_parser.add_argument
    add(
        "--base",
        required=True,
        metavar="DIR[@sha256:...]",
        help="the base image's OCI layout, pinned by its manifest's digest if given",
    )
    add("--tag", default="latest", help="the image's name in the layout's index (default latest)")
    add("-o", "--output", type=Path, required=True, metavar="DIR", help="the OCI layout to write")
    image_parser.set_defaults(run=_run_image)


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    """The sources, handler, runtime and requirements: what every kind of package is built of."""
    add = parser.add_argument
    _add_source_arguments(parser)
    add("--handler", help="module.function, as Lambda's handler setting (a function needs it)")
    add("--runtime", required=True, help=f"the Lambda runtime: {', '.join(RUNTIMES)}")
    add(
        "--architecture",
        default=DEFAULT_ARCHITECTURE,
        help=f"{' or '.join(ARCHITECTURES)} (default {DEFAULT_ARCHITECTURE})",
    )
    add(
        "-r",
        "--requirements",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a requirements file (repeatable)",
    )
    add(
        "--requirement",
        action="append",
        default=[],
        metavar="REQ",
        help="a requirement, e.g. pydantic==2.12.5 (repeatable)",
    )
    add(
        "--lockfile",
        type=Path,
        metavar="LOCK",
        help="the lock requirements resolve from: a pex/Pants lock, pylock.toml or uv.lock",
    )
    add(
        "--find-links",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a folder that may hold locked wheels (checked like a download; repeatable; "
        "$PIP_FIND_LINKS too)",
    )


def _add_package_options(package_parser: argparse.ArgumentParser) -> None:
    """What the target's fields say, and where the output and the cache go."""
    add = package_parser.add_argument
    add(
        "--compile-bytecode",
        action="store_true",
        help="ship reproducible .pyc compiled by the runtime's CPython (found under pyenv, "
        "/usr/local/bin, /usr/bin, /bin)",
    )
    add(
        "--exclude-distribution",
        action="append",
        default=[],
        metavar="NAME",
        help="leave out a distribution and what only it needs, e.g. boto3 (repeatable)",
    )
    add(
        "--layer",
        action="append",
        default=[],
        metavar="NAME=LAYER.zip",
        help="a layer the function is deployed with (a zip `package --kind layer` wrote, its "
        "manifest beside it); what it holds is left out (repeatable)",
    )
    add(
        "--name",
        help="the package's name in messages and the SBOM (Pants: the target address; "
        "default: OUT's stem)",
    )
    add(
        "--cache-dir",
        type=Path,
        default=None,
        help=f"where wheels and parts are kept (default {default_cache_dir()}; "
        "$LAMBDA_ZIP_CACHE_DIR)",
    )
    add(
        "--level",
        type=int,
        default=DEFAULT_LEVEL,
        help=f"libdeflate level (default {DEFAULT_LEVEL})",
    )


def _request(args: argparse.Namespace, kind: Kind) -> PackageRequest:
    requirements = list(args.requirement)
    for path in args.requirements:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise PackageError(f"{path}: cannot read the requirements ({error.strerror})") from None
        requirements += [
            line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()
        ]
    return PackageRequest(
        name=args.name or args.output.stem,
        kind=kind,
        platform=lambda_platform(args.runtime, args.architecture),
        output=args.output,
        sources=tuple(args.sources),
        source_root=args.source_root,
        handler=args.handler,
        requirements=tuple(requirements),
        lockfile=args.lockfile,
        compile_bytecode=args.compile_bytecode,
        exclude=tuple(args.exclude_distribution),
        layers=tuple((name, Path(path)) for name, path in verbs.pairs(args.layer, "--layer")),
        cache_dir=args.cache_dir or default_cache_dir(),
        find_links=tuple(args.find_links),
        level=args.level,
    )


def _run_image(args: argparse.Namespace) -> int:
    from lambda_rules.lambda_zip import local_image

    result = local_image.build_image(_request(args, Kind.FUNCTION), args.base, args.tag)
    for warning in result.warnings:
        print(f"{zipper_cli.PROG}: warning: {warning}", file=sys.stderr)
    print(args.output)
    print(f"image {result.manifest_digest}  layers: {len(result.layers)} of ours")
    return 0


def _run_package(args: argparse.Namespace) -> int:
    result = package(_request(args, Kind(args.kind)))
    for warning in result.warnings:
        print(f"{zipper_cli.PROG}: warning: {warning}", file=sys.stderr)
    for damaged in result.damaged:
        print(
            f"{zipper_cli.PROG}: warning: damaged cache entry rebuilt: {damaged}", file=sys.stderr
        )
    paths = result.outputs.paths
    directory = args.output.parent
    for path in (paths.archive, paths.content_addressed, paths.manifest, paths.sbom):
        print(directory / path)
    print(
        f"{result.zipped_size:,} bytes  distributions: {result.distributions}, compressed "
        f"{result.compressed}, from the cache {result.distributions - result.compressed}"
    )
    return 0


_VERIFY_DESCRIPTION = """\
Prove that every entry of ARCHIVE comes from where its manifest says: each distribution's files
byte-identical to the wheel the lockfile pins (fetched, or taken from the wheel cache, and checked
against the lock's sha256), each .pyc as the
runtime's CPython compiles it from those sources, first-party files equal to SOURCE, and nothing
else. It packages the archive again from those inputs alone (no cache of parts is trusted) and
compares every byte, and the manifest and SBOM beside it too. Nothing in the archive is executed;
a hostile archive gets the same refusal as `repack`.

Given an image layout DIR (what `image` wrote) instead, it does the same for the layers of ours:
every blob checked against its digest, every file they put under /var/task against the layers
made again from the same inputs, and DIR.json and DIR.cdx.json beside it. The handler, runtime and
architecture come from DIR.json; no --base is needed: the base's layers are the base's, and none
may put a file under /var/task.

Exit status: 0 verified (a summary of the entries by origin on stdout); 1 not verified (every
unexplained, altered or missing entry named, with its distribution, on stderr); 2 bad input.
"""


def _verify_arguments(verify_parser: argparse.ArgumentParser) -> None:
    add = verify_parser.add_argument
    add(
        "archive",
        metavar="ARCHIVE.zip|DIR",
        type=Path,
        help="the zip `package` wrote, or the OCI image layout `image` wrote",
    )
    _add_source_arguments(verify_parser)
    add("--lockfile", type=Path, required=True, metavar="LOCK")
    add("--manifest", type=Path, help="the manifest (default: ARCHIVE's or DIR's .json beside it)")
    add("--sbom", type=Path, help="the SBOM (default: the .cdx.json beside it, if any)")
    add(
        "--layer",
        action="append",
        default=[],
        metavar="NAME=LAYER.zip",
        help="a layer the function (a zip) is deployed with; it is verified too (repeatable)",
    )
    add("--name", help="the package's name in its SBOM (default: the SBOM's own)")
    add(
        "--cache-dir",
        type=Path,
        default=None,
        help="where wheels are kept (parts are never reused here); as for package",
    )
    verify_parser.set_defaults(run=_run_verify)


def _run_verify(args: argparse.Namespace) -> int:
    from lambda_rules.lambda_zip import verify_archive as verify

    reports = verify.verify_all(
        verify.VerifyRequest(
            archive=args.archive,
            lockfile=args.lockfile,
            sources=tuple(args.sources),
            source_root=args.source_root,
            manifest=args.manifest,
            sbom=args.sbom,
            layers=tuple((name, Path(path)) for name, path in verbs.pairs(args.layer, "--layer")),
            name=args.name,
            wheel_cache=(args.cache_dir or default_cache_dir()) / "wheels",
        )
    )
    lines, problems = verify.describe(reports)
    for line in lines:
        print(line)
    for problem in problems:
        print(f"{zipper_cli.PROG}: verify: {problem}", file=sys.stderr)
    return 1 if problems else 0


VERBS = (
    *verbs.TOOL_VERBS,
    zipper_cli.Verb(
        "package",
        _package_arguments,
        help="package a function or layer without Pants (same bytes as `pants package`)",
        description=_PACKAGE_DESCRIPTION,
        preformatted=True,
    ),
    zipper_cli.Verb(
        "image",
        _image_arguments,
        help="the same function as a reproducible Lambda container image (an OCI layout)",
        description=_IMAGE_DESCRIPTION,
        preformatted=True,
    ),
    zipper_cli.Verb(
        "verify",
        _verify_arguments,
        help="check an archive or an image layout against its lockfile's wheels and sources",
        description=_VERIFY_DESCRIPTION,
        preformatted=True,
    ),
)


if __name__ == "__main__":
    sys.exit(main())
