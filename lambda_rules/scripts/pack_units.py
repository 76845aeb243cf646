"""The resolve's process, after pex: the flat site-packages -> one stored archive per unit.

Pants hashes and stores every file a process writes and writes every input file into each
sandbox, about 0.4 ms a file on 2 cores: botocore's 2,055 files cost more to hand from the
resolve to its compress process than compressing them does. So the Pants rules run pex from here
(`-- PEX_ARGV...`, its exit status and output passed on), split what it laid out into units
(`units.split_distributions`, as `lambda-zip package` does) and hand each unit on as one file:

    OUT/units.json        {"units": [{"distribution": [name, version] or null,
                          "paths": [path, ...], "size": bytes}, ...]}: every bundled path is in
                          exactly one unit
    OUT/<i>.zip.pieces/   unit i's files, stored: what `lambda-zip build --store` writes of them,
                          so `lambda-zip repack` of it is byte-identical to a build of the files;
                          as pieces (`lambda_rules.pieces`), which Pants stores at half the cost
    OUT/dist-info/<path>  every top-level `*.dist-info/METADATA` and `WHEEL`, for the plan and
                          the SBOM

A unit's archive is a function of its files alone, so a compress process keyed by it is shared by
every resolve that holds the same distribution. Runs on the interpreter pex runs on, isolated,
with the standard library and the files of ours `sandbox_files.UNIT_PACKER` lists.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lambda_rules import pieces, units
from lambda_rules.zipper.archive import PlannedEntry, write_archive_to
from lambda_rules.zipper.errors import ZipError
from lambda_rules.zipper.filters import PathFilter
from lambda_rules.zipper.tree import collect_files

UNITS_JSON = "units.json"
METADATA_DIR = "dist-info"
_RECORD = re.compile(r"[^/]+\.dist-info/RECORD")
_METADATA = re.compile(r"[^/]+\.dist-info/(METADATA|WHEEL)")
_PACKING_THREADS = 4


def pack(site_packages: Path, out: Path) -> None:
    # Every file, named as `lambda-zip build` names it (links inside the tree followed).
    files = {f.name: f for f in collect_files(site_packages, PathFilter(default_excludes=()))}
    records = {name: file.read() for name, file in files.items() if _RECORD.fullmatch(name)}
    split = units.split_distributions(files, records)
    out.mkdir(parents=True)

    def write_unit(index: int, plan: units.UnitPlan) -> None:
        entries = [PlannedEntry(name, files[name].executable, files[name]) for name in plan.paths]
        entries.sort(key=lambda entry: entry.name.encode("utf-8"))
        with pieces.create(out / f"{index}.zip{pieces.SUFFIX}") as written:
            write_archive_to(written, entries, level=None, timestamp=None, workers=1)

    # Reading, checksumming and writing release the GIL, and this last step of the resolve has
    # the cores to itself: threads pack numpy + pandas (103 MB) in 0.27-0.31 s instead of 0.38.
    # Each archive is still written by one thread, so its bytes do not depend on the threads.
    with ThreadPoolExecutor(max_workers=_PACKING_THREADS) as pool:
        for written in [pool.submit(write_unit, *job) for job in enumerate(split.units)]:
            written.result()
    listed = [
        {
            "distribution": [plan.distribution.name, plan.distribution.version]
            if plan.distribution
            else None,
            "paths": list(plan.paths),
            "size": sum(files[name].size for name in plan.paths),
        }
        for plan in split.units
    ]
    for name, file in files.items():
        if _METADATA.fullmatch(name):
            target = out / METADATA_DIR / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(file.read())
    (out / UNITS_JSON).write_text(json.dumps({"units": listed}, sort_keys=True), encoding="utf-8")


def on_base_interpreter(
    command: list[str], env: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """`command` and `env` with pex started on the base interpreter of this process's virtualenv,
    when pex was to start on this interpreter and it is a virtualenv's (Pants runs pex on its own
    interpreter, and ./pants runs Pants from a virtualenv).

    pex resolves out of a virtualenv and starts again on its base interpreter before it does any
    work (pex 2.x `pex_bootstrapper.maybe_reexec_pex`, `PythonInterpreter.resolve_base_interpreter`
    looks for `python<major>.<minor>` in the base prefix's `bin/`, as here): its own start twice,
    0.45 of the 1.75 s numpy + pandas take. Started there, pex runs on the same interpreter it
    would have ended on, and the process Pants keys its caches by is unchanged.
    """
    if not command or command[0] != sys.executable:
        return command, env
    # PEP 405: a virtualenv's `pyvenv.cfg` is beside its interpreter or one directory up. Not
    # `sys.prefix`, which only `site` (left out, -S) moves to the virtualenv before Python 3.11.
    executable = Path(sys.executable)
    if not any((d / "pyvenv.cfg").is_file() for d in (executable.parent, executable.parent.parent)):
        return command, env
    base = Path(sys.base_prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}")
    if not os.access(base, os.X_OK):
        return command, env
    if env.get("PEX_PYTHON") == sys.executable:
        env = {**env, "PEX_PYTHON": str(base)}
    return [str(base), *command[1:]], env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pack_units.py",
        description="Run a pex command that lays distributions out flat, then pack each unit.",
    )
    parser.add_argument("--site-packages", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then pex's argv")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give pex's command line after --")
    command, env = on_base_interpreter(command, dict(os.environ))
    status = subprocess.call(command, env=env)
    if status != 0:
        return status
    try:
        pack(args.site_packages, args.out)
    except ZipError as error:
        sys.stderr.write(f"lambda_rules: cannot pack the resolved distributions: {error}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
