"""The zipper's command line: build, repack, merge, diff, hash (`python -m lambda_rules.zipper`).

The `lambda-zip` command (`lambda_rules.lambda_zip.main`) offers these verbs and more.

Exit codes: 0 success (diff: identical), 1 diff found differences,
2 bad input or usage (message on stderr, never a traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from lambda_rules.zipper.build import build_zip
from lambda_rules.zipper.compress import DEFAULT_LEVEL, MAX_LEVEL, MIN_LEVEL
from lambda_rules.zipper.errors import ZipError
from lambda_rules.zipper.merge import merge_zips
from lambda_rules.zipper.output import replaced_atomically
from lambda_rules.zipper.summary import ZipSummary, file_sha256
from lambda_rules.zipper.timestamps import parse_epoch, timestamp_from_environment

PROG = "lambda-zip"
EXIT_DIFFERENT = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """The zipper's verbs alone (`python -m lambda_rules.zipper`); `lambda-zip` adds more."""
    parser, arguments = new_parser(VERBS, argv)
    return run(parser.parse_args(arguments))


def run(args: argparse.Namespace, user_errors: tuple[type[Exception], ...] = ()) -> int:
    """Run the chosen verb: an error caused by the input (a `ZipError`, an OSError, or one of
    `user_errors`) is one line on stderr and exit status 2, never a traceback."""
    handled: tuple[type[Exception], ...] = (ZipError, *user_errors)
    try:
        return args.run(args)
    except handled as error:
        return fail(str(error))
    except OSError as error:
        return fail(f"{error.filename}: {error.strerror}" if error.filename else str(error))
    except MemoryError:  # here or in a compression worker, which hands it back to us
        inputs: list[str] = []
        for name in ("directory", "archive", "archives", "parts", "tree", "a", "b"):
            value = getattr(args, name, [])
            values = value if isinstance(value, list) else [value]
            inputs.extend(str(v) for v in values if v is not None)
        return fail(
            f"{' and '.join(inputs)}: not enough memory to {args.command}; free memory or raise "
            "the memory limit, pass fewer --workers (each holds whole files in memory), or split "
            "the input into smaller archives"
        )
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no output was written", file=sys.stderr)
        return EXIT_INTERRUPTED


def fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


class Verb(NamedTuple):
    """A verb: its name, what `--help` says of it, and the function that adds its arguments
    (and its `run`) to its parser."""

    name: str
    arguments: Callable[[argparse.ArgumentParser], None]
    help: str
    description: str | None = None
    # Keep the description's line breaks (a long text with examples).
    preformatted: bool = False


def new_parser(
    verbs: Sequence[Verb], argv: Sequence[str] | None
) -> tuple[argparse.ArgumentParser, list[str]]:
    """The command line of `verbs` for `argv` (the process's when None), and its arguments: a
    verb named first gets the only subparser (the other verbs' arguments cost a warm `lambda-zip
    package` about 5 ms of argparse, a twentieth of its run); otherwise, for `--help` and for a
    misspelt verb, every verb has its own."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog=PROG, description="Byte-for-byte reproducible AWS Lambda ZIP archives."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    named = [verb for verb in verbs if arguments[:1] == [verb.name]]
    for verb in named or verbs:
        raw = verb.preformatted
        verb_parser = commands.add_parser(
            verb.name,
            help=verb.help,
            description=verb.description,
            formatter_class=argparse.RawDescriptionHelpFormatter if raw else argparse.HelpFormatter,
        )
        verb.arguments(verb_parser)
    return parser, arguments


def _build_arguments(build: argparse.ArgumentParser) -> None:
    build.add_argument("directory", metavar="DIR", type=Path)
    _add_write_options(build)
    _add_executables_option(build)
    build.set_defaults(run=_run_build)


def _build_parts_arguments(build_parts: argparse.ArgumentParser) -> None:
    build_parts.add_argument(
        "--part", nargs=2, action="append", default=[], metavar=("DIR", "OUT.zip"), type=Path
    )
    build_parts.add_argument(
        "--repack", nargs=2, action="append", default=[], metavar=("IN.zip", "OUT.zip"), type=Path
    )
    _add_write_options(build_parts, one_output=False)
    _add_executables_option(build_parts)
    build_parts.set_defaults(run=_run_build_parts)


def _repack_arguments(repack: argparse.ArgumentParser) -> None:
    # The repacker is imported by its verbs alone: a merge never reads a non-canonical archive.
    from lambda_rules.zipper.repack import DEFAULT_MAX_RATIO, DEFAULT_MAX_UNZIPPED_SIZE

    repack.add_argument("archive", metavar="IN.zip", type=Path)
    _add_write_options(repack)
    repack.add_argument(
        "--max-ratio",
        type=int,
        default=DEFAULT_MAX_RATIO,
        metavar="R",
        help=f"refuse entries over 1 MiB expanding more than R:1 (default {DEFAULT_MAX_RATIO})",
    )
    repack.add_argument(
        "--max-unzipped-size",
        type=int,
        default=DEFAULT_MAX_UNZIPPED_SIZE,
        metavar="BYTES",
        help="refuse archives declaring more than BYTES in total "
        f"(default {DEFAULT_MAX_UNZIPPED_SIZE})",
    )
    repack.set_defaults(run=_run_repack)


def _merge_arguments(merge: argparse.ArgumentParser) -> None:
    merge.add_argument("parts", metavar="PART.zip", type=Path, nargs="*")
    merge.add_argument(
        "--tree", metavar="DIR", type=Path, help="also zip DIR's files and merge them in"
    )
    _add_write_options(merge, with_prefix=False)
    _add_executables_option(merge)
    merge.set_defaults(run=_run_merge)


def _diff_arguments(diff: argparse.ArgumentParser) -> None:
    diff.add_argument("a", metavar="A.zip", type=Path)
    diff.add_argument("b", metavar="B.zip", type=Path)
    diff.set_defaults(run=_run_diff)


def _hash_arguments(hash_: argparse.ArgumentParser) -> None:
    hash_.add_argument("archive", metavar="FILE", type=Path)
    hash_.add_argument("--json", action="store_true", help="print a JSON object instead")
    hash_.set_defaults(run=_run_hash)


VERBS = (
    Verb(
        "build",
        _build_arguments,
        help="zip a staged directory",
        description="Zip DIR into a canonical archive. __pycache__/, *.pyc and *.pyo are left out "
        "unless --include re-admits them.",
    ),
    Verb(
        "build-parts",
        _build_parts_arguments,
        help="zip several directories, each into its own archive, in one process",
        description="For each --part DIR OUT.zip, write OUT.zip exactly as `build DIR -o OUT.zip` "
        "would, and for each --repack IN.zip OUT.zip as `repack IN.zip -o OUT.zip` would, with "
        "the same options for all. One process instead of one per input: a build tool with many "
        "small distributions saves a start each.",
    ),
    Verb(
        "repack",
        _repack_arguments,
        help="rewrite an existing archive in canonical form",
        description="Rewrite IN.zip in the same canonical form as build. Every file is kept "
        "unless --exclude drops it; directory entries are dropped. Unsafe or corrupt archives "
        "are refused and no output is written. IN.zip may also be given as IN.zip.pieces/, the "
        "pieces the Pants rules hand it between processes in.",
    ),
    Verb(
        "merge",
        _merge_arguments,
        help="merge archives made by build from disjoint files into one",
        description="Merge PART.zip archives, each made by `lambda-zip build` from disjoint files "
        "of one tree at the same level and timestamp, into OUT.zip: byte-identical to a build of "
        "the whole tree, with the same --summary-json. Compressed data is copied, never "
        "recompressed, so it takes the parts' timestamp and ignores SOURCE_DATE_EPOCH. Parts not "
        "in canonical form are refused, not repacked: run `lambda-zip repack` on them first. A "
        "path in two parts, or parts with different timestamps, are refused too; on any error no "
        "output is written. Payload CRCs are not checked here (readers of OUT.zip check them). "
        "--tree DIR zips DIR's files as `build` would and merges them in, so a small part that "
        "changes often (first-party code) needs no process of its own; the compression options "
        "apply to DIR only, and must match the parts' (the timestamp above all).",
    ),
    Verb(
        "diff",
        _diff_arguments,
        help="explain why two archives differ",
        description="Exit 0 if A and B are byte-identical, 1 (listing the differences) if not, "
        "2 on error.",
    ),
    Verb(
        "hash",
        _hash_arguments,
        help="print an archive's SHA-256 (hex and base64)",
        description="Print the SHA-256 as hex and as base64 of the raw digest (Terraform's "
        "filebase64sha256, Lambda's CodeSha256).",
    ),
)


def _add_write_options(
    parser: argparse.ArgumentParser, *, one_output: bool = True, with_prefix: bool = True
) -> None:
    if one_output:
        parser.add_argument("-o", "--output", metavar="OUT.zip", type=Path, required=True)
    compression = parser.add_mutually_exclusive_group()
    compression.add_argument(
        "--level",
        type=int,
        metavar="N",
        help=f"libdeflate level {MIN_LEVEL}-{MAX_LEVEL} (default {DEFAULT_LEVEL})",
    )
    compression.add_argument("--store", action="store_true", help="store entries uncompressed")
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out matching paths (repeatable; '**' spans directories, a pattern without '/' "
        "matches a name at any depth)",
    )
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="keep matching paths even if an exclude (default or given) matches (repeatable)",
    )
    parser.add_argument(
        "--timestamp",
        metavar="EPOCH",
        help="Unix time for every entry, in UTC (default: $SOURCE_DATE_EPOCH, else 1980-01-01)",
    )
    if with_prefix:
        parser.add_argument(
            "--prefix",
            default="",
            metavar="DIR/",
            help="put every entry under DIR/ (a Lambda layer's python/)",
        )
    workers = parser.add_mutually_exclusive_group()
    workers.add_argument(
        "--workers", type=int, metavar="N", help="compression processes (default: all CPUs)"
    )
    workers.add_argument(
        "--max-workers",
        type=int,
        metavar="N",
        help="at most N compression processes; inputs under 8 MiB use one (what a build tool "
        "that grants N cores wants)",
    )
    if one_output:
        parser.add_argument(
            "--summary-json",
            type=Path,
            metavar="PATH",
            help="also write hashes, sizes and entries as JSON",
        )
        parser.add_argument(
            "--totals-json",
            type=Path,
            metavar="PATH",
            help="also write the hashes and sizes alone as JSON (--summary-json without its "
            "entries: what a build tool writing many manifests reads)",
        )


def _add_executables_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--executables",
        type=Path,
        metavar="FILE",
        help="give an exec bit to exactly the files FILE lists (DIR/name, one a line), whatever "
        "their modes: for a build tool whose sandboxes do not keep modes",
    )


def _executables(args: argparse.Namespace) -> dict:
    if args.executables is None:
        return {}
    lines = args.executables.read_text(encoding="utf-8").splitlines()
    return {"executables": frozenset(line for line in lines if line)}


def _write_options(args: argparse.Namespace) -> dict:
    timestamp = (
        parse_epoch(args.timestamp, "--timestamp")
        if args.timestamp is not None
        else timestamp_from_environment(os.environ)
    )
    return dict(
        level=DEFAULT_LEVEL if args.level is None else args.level,
        store=args.store,
        excludes=args.exclude,
        includes=args.include,
        timestamp=timestamp,
        workers=args.workers,
        max_workers=args.max_workers,
        **({"prefix": args.prefix} if "prefix" in args else {}),
    )


def _report(args: argparse.Namespace, summary: ZipSummary) -> int:
    if args.summary_json is not None:
        with replaced_atomically(args.summary_json) as f:
            f.write(summary.to_json().encode("utf-8"))
    if args.totals_json is not None:
        with replaced_atomically(args.totals_json) as f:
            f.write(summary.totals_json().encode("utf-8"))
    print(f"{args.output}  {summary.zipped_size} bytes  sha256:{summary.sha256_hex}")
    return 0


def _run_build(args: argparse.Namespace) -> int:
    options = {**_write_options(args), **_executables(args)}
    return _report(args, build_zip(args.directory, args.output, **options))


def _run_build_parts(args: argparse.Namespace) -> int:
    if not args.part and not args.repack:
        raise ZipError(
            "build-parts: give at least one --part DIR OUT.zip or --repack IN.zip OUT.zip"
        )
    from lambda_rules.zipper.repack import repack_zip

    options = _write_options(args)
    built = {**options, **_executables(args)}
    jobs: list[tuple[Callable[..., ZipSummary], Path, Path, dict]] = [
        (build_zip, d, o, built) for d, o in args.part
    ]
    jobs += [(repack_zip, a, o, options) for a, o in args.repack]
    for write, source, output, job_options in jobs:
        output.parent.mkdir(parents=True, exist_ok=True)
        summary = write(source, output, **job_options)
        print(f"{output}  {summary.zipped_size} bytes  sha256:{summary.sha256_hex}")
    return 0


def _run_repack(args: argparse.Namespace) -> int:
    from lambda_rules.zipper.repack import RepackLimits, repack_zip

    limits = RepackLimits(max_ratio=args.max_ratio, max_unzipped_size=args.max_unzipped_size)
    return _report(
        args, repack_zip(args.archive, args.output, limits=limits, **_write_options(args))
    )


def _run_merge(args: argparse.Namespace) -> int:
    if not args.parts and args.tree is None:
        raise ZipError("merge needs PART.zip archives made by `lambda-zip build`, or --tree DIR")
    if args.tree is None:
        return _report(args, merge_zips(args.parts, args.output))
    output_directory = args.output.parent
    output_directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".lambda-zip-tree-", dir=output_directory) as scratch:
        tree_part = Path(scratch) / "tree.zip"
        try:
            build_zip(args.tree, tree_part, **_write_options(args), **_executables(args))
            return _report(args, merge_zips([*args.parts, tree_part], args.output))
        except ZipError as error:  # name the tree, not the scratch file made from it
            raise type(error)(str(error).replace(str(tree_part), f"--tree {args.tree}")) from None


def _run_diff(args: argparse.Namespace) -> int:
    from lambda_rules.zipper.diff import diff_archives  # only this verb reads two archives

    lines = diff_archives(args.a, args.b)
    if not lines:
        print(f"identical: {args.a} and {args.b} are byte-identical")
        return 0
    for line in lines:
        print(line)
    return EXIT_DIFFERENT


def _run_hash(args: argparse.Namespace) -> int:
    sha256_hex, sha256_base64 = file_sha256(args.archive)
    if args.json:
        document = {
            "path": str(args.archive),
            "sha256_hex": sha256_hex,
            "sha256_base64": sha256_base64,
        }
        print(json.dumps(document, sort_keys=True))
    else:
        print(f"{sha256_hex}  {sha256_base64}  {args.archive}")
    return 0
