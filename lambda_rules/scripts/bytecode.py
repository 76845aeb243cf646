"""Reproducible `.pyc` files for a Lambda package, compiled by the runtime's own CPython.

Lambda unpacks a package into a read-only directory (/var/task for a function, /opt for a
layer), so CPython cannot cache bytecode there and recompiles every module on each cold start.
This module writes, next to every `X.py` of a tree, `__pycache__/X.cpython-3XY.pyc` such that
the runtime uses it and the bytes are the same wherever and however they are built.

It is a program run BY the CPython of the runtime's exact minor version (3.9 to 3.14), Pants-free
and stdlib-only; of ours it imports only `canonical_marshal` and `pieces`. The Pants rules ship
exactly those files (`lambda_rules.sandbox_files.BYTECODE_COMPILER`) into the sandbox of the
process, as file contents under a directory SCRIPTS, and run

    python3.X -I -B -c "<entry_program(BYTECODE_COMPILER_MODULE, (SCRIPTS,))>" compile \
        --root DIR --prefix /var/task [--workers N] [--on-invalid fail|skip] \
        [--third-party REL]... [--third-party-list FILE] [--unpack ARCHIVE DIR]...

(`python3.X -m lambda_rules.scripts.bytecode compile ...` from a checkout), then read its JSON
report from standard output; its workers import this module again from the same directory.

For every `*.py` under DIR (directories named `__pycache__` are not entered, symlinked
directories are not followed) it writes `<dir>/__pycache__/<stem>.<cache_tag>.pyc`, the path
`importlib.util.cache_from_source` gives without a pycache prefix, mode 0644 (its `__pycache__`
0755) whatever the umask. Sources stay. The file is a PEP 552 unchecked-hash pyc: the
interpreter's magic, flags = 0b01 (hash-based, check_source off),
`importlib.util.source_hash(source)`, then the marshalled code of
`compile(source, PREFIX + "/" + relpath, "exec", dont_inherit=True, optimize=0)`, so
`co_filename` (tracebacks, `__file__`-free introspection) reads `/var/task/pkg/mod.py` as it will
on Lambda, never the build path. An unchecked pyc is used without looking at the source, which is
what a read-only, immutable deployment package wants.

A source that does not compile on that runtime is an error naming the file and line (exit status
1, the list on standard error; nothing else is reported as success). Paths given with
`--third-party` (files or directories relative to DIR, e.g. the files of installed distributions)
are treated as pip treats them at install time: a file that does not compile (lib2to3 test data,
`tests/bad_*.py`, Python-2-only leftovers) is skipped without a pyc and listed in the report.
`--on-invalid skip` does the same for every file. On success one JSON object goes to stdout:
{"python": "3.12.1", "cache_tag": "cpython-312", "magic": "cb0d0d0a", "compiled": N,
"skipped": [{"path": ..., "error": ...}]}.

What varies, and what this module does about it (measured on CPython 3.9.18, 3.10.13, 3.11.7,
3.12.1, 3.13.0; tests/test_bytecode.py keeps proving it):

1. marshal's output: set constants are written in PYTHONHASHSEED order, and FLAG_REF follows
   reference counts, i.e. what else lives in the process. Fix: the marshal data is rewritten by
   `canonical_marshal` (its docstring has the measurements), which depends only on the object
   graph `compile()` builds; the compiling processes also run with PYTHONHASHSEED=0 as a second
   line of defence.
2. Interned or not (`Z`/`z` type codes) follows process history for the cached one-character
   strings on 3.9-3.11: `"."` becomes interned once anything in the process interns it (e.g. the
   import system on a relative import). Fix: each compiling process interns all 256 cached
   one-character strings before compiling, so they are always written as interned.
3. `co_filename` embeds the path given to `compile()`: we give PREFIX + the '/'-joined path
   relative to the root, nothing from the build machine. (When importing a pyc whose source
   exists, CPython's importlib rewrites co_filename to the source's actual location anyway; on
   Lambda that is the same /var/task or /opt/python path, so tracebacks read the same either
   way, and the embedded path is what keeps the bytes free of the build path.)
4. Order, worker count, umask, checkout path: files are found by a sorted walk, compiled in
   fresh worker processes (sanitised environment: no PYTHON* variables, -S -s -B; they import
   this module from the directory the parent loaded it from, placed after the standard library
   so nothing there shadows a stdlib module), written with explicit modes via a temporary file
   and rename; the bytes do not depend on the batching (1.). `optimize=0` and
   `dont_inherit=True` are explicit so neither -O nor the caller's `from __future__` imports
   leak in; warnings (invalid escape sequences) are silenced so a warnings filter cannot turn
   them into errors.

After rewriting, every file is checked: the rewrite must consume marshal's output exactly and
`marshal.loads` of the result must equal the compiled code object, else the build fails (this
guards an unknown future marshal format instead of writing a wrong pyc).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import marshal
import os
import subprocess
import sys
import warnings
from typing import Iterable

from lambda_rules.scripts.canonical_marshal import canonical_marshal
from lambda_rules.zipper import pieces

_PREPARED = False


def _prepare_process() -> None:
    """Make the interned state of the cached one-character strings independent of the history
    of this process (see 2. in the module docstring)."""
    global _PREPARED
    if not _PREPARED:
        for i in range(256):
            sys.intern(chr(i))
        _PREPARED = True


class InvalidSourceError(Exception):
    """A source file that does not compile on this interpreter."""

    def __init__(self, relpath: str, lineno, message: str) -> None:
        self.relpath = relpath
        self.lineno = lineno
        self.message = message
        where = relpath if lineno is None else f"{relpath}:{lineno}"
        super().__init__(f"{where}: {message}")


def code_filename(prefix: str, relpath: str) -> str:
    """What `co_filename` says: the prefix (/var/task, /opt/python) joined with a '/' path."""
    return prefix.rstrip("/") + "/" + relpath.replace(os.sep, "/").lstrip("/")


def pyc_bytes(source: bytes, filename: str, relpath: str = "") -> bytes:
    """The reproducible unchecked-hash pyc (PEP 552) for `source`, with co_filename `filename`.
    Raises InvalidSourceError if it does not compile on this interpreter."""
    _prepare_process()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = compile(source, filename, "exec", dont_inherit=True, optimize=0)
    except SyntaxError as e:
        raise InvalidSourceError(
            relpath or filename, e.lineno, f"{type(e).__name__}: {e.msg}"
        ) from e
    except (ValueError, UnicodeError, OverflowError, RecursionError) as e:
        # e.g. null bytes (ValueError before 3.12), an undecodable file, absurd nesting.
        raise InvalidSourceError(relpath or filename, None, f"{type(e).__name__}: {e}") from e
    try:
        data = canonical_marshal(marshal.dumps(code))
    except ValueError as e:
        raise RuntimeError(
            f"cannot rewrite the marshal data of {relpath or filename} on CPython "
            f"{sys.version.split()[0]} ({e}): this marshal format is not supported"
        ) from e
    if marshal.loads(data) != code:
        raise RuntimeError(
            f"canonical marshal changed the code of {relpath or filename} on CPython "
            f"{sys.version.split()[0]}: this marshal format is not supported"
        )
    flags = 0b01  # hash-based, check_source = 0 (unchecked)
    return (
        importlib.util.MAGIC_NUMBER
        + flags.to_bytes(4, "little")
        + importlib.util.source_hash(source)
        + data
    )


def pyc_path(root: str, relpath: str) -> str:
    """`<dir>/__pycache__/<stem>.<cache_tag>.pyc`: importlib.util.cache_from_source without a
    pycache prefix (an inherited PYTHONPYCACHEPREFIX must not move our output)."""
    tag = sys.implementation.cache_tag
    if tag is None:
        raise RuntimeError(
            "this interpreter does not cache bytecode (sys.implementation.cache_tag is None)"
        )
    directory, name = os.path.split(os.path.join(root, relpath))
    stem = name[: -len(".py")]
    return os.path.join(directory, "__pycache__", f"{stem}.{tag}.pyc")


def _write(path: str, data: bytes) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o755)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def find_sources(root: str) -> list:
    """Every `*.py` under root, as sorted '/'-separated relative paths."""
    found = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        rel = os.path.relpath(directory, root)
        for name in filenames:
            if name.endswith(".py") and os.path.isfile(os.path.join(directory, name)):
                path = name if rel == "." else os.path.join(rel, name)
                found.append(path.replace(os.sep, "/"))
    return sorted(found)


def _compile_files(root: str, prefix: str, files: list, skippable: list) -> dict:
    compiled = 0
    skipped: list[dict[str, str]] = []
    errors: list[dict[str, str]] = []
    for relpath, skip in zip(files, skippable):
        with open(os.path.join(root, relpath), "rb") as f:
            source = f.read()
        try:
            data = pyc_bytes(source, code_filename(prefix, relpath), relpath)
        except InvalidSourceError as e:
            (skipped if skip else errors).append({"path": relpath, "error": str(e)})
            continue
        _write(pyc_path(root, relpath), data)
        compiled += 1
    return {"compiled": compiled, "skipped": skipped, "errors": errors}


def _worker(argv: list) -> int:
    """Compiles the batch described by the JSON on stdin; writes the result as JSON."""
    job = json.loads(sys.stdin.read())
    result = _compile_files(job["root"], job["prefix"], job["files"], job["skippable"])
    sys.stdout.write(json.dumps(result))
    return 0


# The directory holding the `lambda_rules` package this module was loaded from: the workers
# import it from there too (a sandbox holds only `sandbox_files.BYTECODE_COMPILER` in it).
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Imports this module in a fresh interpreter (-S: no site-packages) with that directory after the
# standard library and without the current directory, so nothing in either can shadow a stdlib
# module, and no other `lambda_rules` comes first.
_BOOTSTRAP = (
    "import sys; del sys.path[0]; sys.path.append(sys.argv[1]); "
    "from lambda_rules.scripts.bytecode import _worker; sys.exit(_worker(sys.argv[2:]))"
)


def _worker_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    return env


def _is_third_party(relpath: str, third_party: list) -> bool:
    return any(relpath == p or relpath.startswith(p + "/") for p in third_party)


def compile_in_place(
    root: str, prefix: str, *, workers: int = 1, third_party=(), skip_invalid: bool = False
) -> dict:
    """Target side: compile every source under root in fresh worker processes of this
    interpreter. Returns the report; sources that failed and were not skippable are in
    report["errors"] (main turns them into exit status 1)."""
    if not sys.executable:
        raise RuntimeError("sys.executable is unknown: cannot start worker interpreters")
    root = os.path.abspath(root)
    files = find_sources(root)
    tp = [p.strip("/") for p in third_party if p.strip("/")]
    skippable = [skip_invalid or _is_third_party(f, tp) for f in files]
    n = max(1, min(workers, len(files)))
    procs = []
    for i in range(n):
        job = {"root": root, "prefix": prefix, "files": files[i::n], "skippable": skippable[i::n]}
        proc = subprocess.Popen(
            [sys.executable, "-S", "-s", "-B", "-c", _BOOTSTRAP, _SOURCE_ROOT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_worker_env(),
        )
        assert proc.stdin is not None  # stdin=PIPE
        proc.stdin.write(json.dumps(job).encode())  # a worker reads all of it before working
        proc.stdin.close()
        proc.stdin = None  # so communicate() only collects the output
        procs.append(proc)
    compiled, skipped, errors, crashes = 0, [], [], []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            crashes.append(err.decode(errors="replace").strip())
            continue
        result = json.loads(out)
        compiled += result["compiled"]
        skipped += result["skipped"]
        errors += result["errors"]
    if crashes:
        raise RuntimeError("a bytecode worker failed:\n" + "\n".join(crashes))
    return {
        "python": sys.version.split()[0],
        "cache_tag": sys.implementation.cache_tag,
        "magic": importlib.util.MAGIC_NUMBER.hex(),
        "compiled": compiled,
        "skipped": sorted(skipped, key=lambda s: s["path"]),
        "errors": sorted(errors, key=lambda s: s["path"]),
    }


def unpack(archive: str, directory: str) -> None:
    """Extract `archive` (a file, or a directory of its pieces) into `directory` with each file's
    exec bit (0755, else 0644); zipfile keeps every entry inside `directory`."""
    import zipfile

    with pieces.open_input(archive) as packed, zipfile.ZipFile(packed) as source:
        for info in source.infolist():
            path = source.extract(info, directory)
            if not info.is_dir():
                os.chmod(path, 0o755 if info.external_attr >> 16 & 0o111 else 0o644)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bytecode.py",
        description="Write reproducible unchecked-hash .pyc files next to every .py under a tree, "
        "for this interpreter's version.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compile", help="compile a tree in place")
    c.add_argument(
        "--root",
        action="append",
        required=True,
        help="a tree (the package's /var/task or /opt); repeatable: each is compiled as its own "
        "root, so one process serves many small trees",
    )
    c.add_argument(
        "--prefix", required=True, help="where Lambda loads it from: /var/task, /opt/python"
    )
    c.add_argument(
        "--unpack",
        nargs=2,
        action="append",
        default=[],
        metavar=("ARCHIVE", "DIR"),
        help="first extract ARCHIVE (a unit the rules packed) into DIR, exec bits kept "
        "(repeatable)",
    )
    c.add_argument(
        "--workers", type=int, default=1, help="worker processes (the bytes do not depend on it)"
    )
    c.add_argument(
        "--on-invalid",
        choices=("fail", "skip"),
        default="fail",
        help="a source that does not compile: fail (default) or skip it without a pyc",
    )
    c.add_argument(
        "--third-party",
        action="append",
        default=[],
        metavar="REL",
        help="a file or directory (relative to --root) of third-party code: sources there that "
        "do not compile are skipped, as pip does (repeatable)",
    )
    c.add_argument(
        "--third-party-list", metavar="FILE", help="a file of --third-party paths, one a line"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    for archive, directory in args.unpack:
        unpack(archive, directory)
    for root in args.root:
        if not os.path.isdir(root):
            parser.error(f"--root {root} is not a directory")
    third_party = list(args.third_party)
    if args.third_party_list:
        with open(args.third_party_list, encoding="utf-8") as f:
            third_party += [line.strip() for line in f if line.strip()]
    report = _combined(
        compile_in_place(
            root,
            args.prefix,
            workers=args.workers,
            third_party=third_party,
            skip_invalid=args.on_invalid == "skip",
        )
        for root in args.root
    )
    errors = report.pop("errors")
    if errors:
        sys.stderr.write(
            f"{len(errors)} source file(s) do not compile on CPython {report['python']} "
            "(fix them, or pass --on-invalid skip / mark them --third-party):\n"
        )
        for e in errors:
            sys.stderr.write(f"  {e['error']}\n")
        return 1
    sys.stdout.write(json.dumps(report, sort_keys=True) + "\n")
    return 0


def _combined(reports: Iterable[dict]) -> dict:
    """One report of several roots' compiles: counts added, paths in order."""
    first, *others = reports
    for other in others:
        first["compiled"] += other["compiled"]
        for key in ("skipped", "errors"):
            first[key] = sorted(first[key] + other[key], key=lambda s: s["path"])
    return first


if __name__ == "__main__":
    sys.exit(main())
