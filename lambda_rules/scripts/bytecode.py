"""Reproducible `.pyc` files for a Lambda package, compiled by the runtime's own CPython.

Lambda unpacks a package into a read-only directory (/var/task for a function, /opt for a
layer), so CPython cannot cache bytecode there and recompiles every module on each cold start.
This module writes, next to every `X.py` of a tree, `__pycache__/X.cpython-3XY.pyc` such that
the runtime uses it and the bytes are the same wherever and however they are built.

It is a program run BY the CPython of the runtime's exact minor version (3.9 to 3.14), Pants-free
and stdlib-only (it imports nothing of ours), as a plain file:

    python3.X -I -B path/to/bytecode.py compile --root DIR --prefix /var/task \
        [--workers N] [--on-invalid fail|skip] [--third-party REL]... [--third-party-list FILE]

The Pants rules find that interpreter, ship this file into the sandbox of the process and read
its JSON report from standard output; its workers load it again from `__file__`.

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

1. Set constants follow string hashing. `x in {"a", "b"}` and `frozenset({...})` literals
   compile to a frozenset constant, and marshal writes its elements in iteration order, i.e. in
   an order set by PYTHONHASHSEED. Measured: a plain `marshal.dumps(compile(...))` of a module
   with string set constants gave a different sha256 for each of PYTHONHASHSEED=0, 1, 12345 on
   3.9 and 3.10 (3.11+ marshal sorts set elements itself). Before 3.12, `hash(None)` is even an
   address. Fix: the rewrite below writes every set/frozenset in a canonical order (elements
   sorted by their own canonical marshal bytes), and the compiling processes also run with
   PYTHONHASHSEED=0 as a second line of defence.
2. FLAG_REF follows reference counts (CPython gh-98819). marshal sets the "remember me" flag on
   every object whose refcount is > 1 when it is dumped, whether or not the stream refers back to
   it. A name used once in a module has refcount 1 in a fresh interpreter but more in one that
   has compiled or imported something using the same name: measured on 3.9 and 3.10, dumping the
   same code object in a fresh process and after compiling a few stdlib modules gave different
   bytes. The often-suggested `marshal.loads(marshal.dumps(code))` round trip does NOT fix this:
   loading interns names into the same process-wide table, so their counts still depend on what
   else lives in the process; it also changes the bytes on 3.11-3.13 compared with a direct dump,
   i.e. it is just another process-dependent form. Fix: `canonical_marshal` parses marshal's
   output and writes it again with FLAG_REF on exactly the objects the stream refers to more
   than once (back-references renumbered in write order). That depends only on the object graph
   that `compile()` builds -- names and identifier-like constants are interned, other constants
   are merged per module -- not on anything else alive in the process, so files can be compiled
   in batches by long-lived workers and the bytes do not depend on batching or order.
3. Interned or not (`Z`/`z` type codes) follows process history for the cached one-character
   strings on 3.9-3.11: `"."` becomes interned once anything in the process interns it (e.g. the
   import system on a relative import). Fix: each compiling process interns all 256 cached
   one-character strings before compiling, so they are always written as interned.
4. `co_filename` embeds the path given to `compile()`: we give PREFIX + the '/'-joined path
   relative to the root, nothing from the build machine. (When importing a pyc whose source
   exists, CPython's importlib rewrites co_filename to the source's actual location anyway; on
   Lambda that is the same /var/task or /opt/python path, so tracebacks read the same either
   way, and the embedded path is what keeps the bytes free of the build path.)
5. Order, worker count, umask, checkout path: files are found by a sorted walk, compiled in
   fresh worker processes (sanitised environment: no PYTHON* variables, -S -s -B), written with
   explicit modes via a temporary file and rename; the bytes do not depend on the batching (2.).
   `optimize=0` and `dont_inherit=True` are explicit so neither -O nor the caller's
   `from __future__` imports leak in; warnings (invalid escape sequences) are silenced so a
   warnings filter cannot turn them into errors.

After rewriting, every file is checked: the rewrite must consume marshal's output exactly and
`marshal.loads` of the result must equal the compiled code object, else the build fails (this
guards an unknown future marshal format instead of writing a wrong pyc).
"""

from __future__ import annotations

import importlib.util
import json
import marshal
import os
import subprocess
import sys
import warnings

# ------------------------------------------------------------------------------------------------
# Canonical marshal
# ------------------------------------------------------------------------------------------------

_FLAG_REF = 0x80

# Type codes (Python/marshal.c) whose payload is fixed-size or self-delimited raw bytes.
_FIXED = {
    ord("0"): 0,  # NULL
    ord("N"): 0,  # None
    ord("F"): 0,  # False
    ord("T"): 0,  # True
    ord("S"): 0,  # StopIteration
    ord("."): 0,  # Ellipsis
    ord("i"): 4,  # int32
    ord("I"): 8,  # int64 (only read by old versions)
    ord("g"): 8,  # binary float
    ord("y"): 16,  # binary complex
}
# Singletons: marshal never flags them and its reader would not number them.
_SINGLETONS = {ord(c) for c in "0NFTS."}
_LEN32_BYTES = {ord(c) for c in "sutaA"}  # bytes, unicode, interned, ascii, ascii interned
# Interned string type codes and their plain forms (non-ASCII, ASCII, short ASCII).
_UNINTERNED = {ord("t"): ord("u"), ord("A"): ord("a"), ord("Z"): ord("z")}
_LEN8_BYTES = {ord(c) for c in "zZ"}  # short ascii, short ascii interned
_LEN32_OBJECTS = {ord(c) for c in "([<>"}  # tuple, list, set, frozenset
_SETS = {ord("<"), ord(">")}
_CONTAINERS = _LEN32_OBJECTS | {ord(c) for c in "){:c"}
_REF = ord("r")

# The code object layout: "i" an int32 field, "o" an object.
if sys.version_info >= (3, 11):
    # argcount posonlyargcount kwonlyargcount stacksize flags | code consts names
    # localsplusnames localspluskinds filename name qualname | firstlineno | linetable
    # exceptiontable
    _CODE_LAYOUT = "iiiii" + "oooooooo" + "i" + "oo"
else:
    # argcount posonlyargcount kwonlyargcount nlocals stacksize flags | code consts names
    # varnames freevars cellvars filename name | firstlineno | lnotab (3.10: linetable)
    _CODE_LAYOUT = "iiiiii" + "oooooooo" + "i" + "o"


class _Node:
    """One object of a marshal stream: its type code (without FLAG_REF) and its parts, each raw
    bytes or a child _Node, in stream order. Shared objects are the same _Node."""

    __slots__ = ("code", "parts", "is_set")

    def __init__(self, code: int) -> None:
        self.code = code
        self.parts: list = []
        self.is_set = code in _SETS


class _Parser:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.refs: list = []

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated marshal data")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int32(self) -> bytes:
        return self.take(4)

    def node(self) -> _Node:
        byte = self.take(1)[0]
        code = byte & ~_FLAG_REF
        flagged = bool(byte & _FLAG_REF)
        if code == _REF:
            index = int.from_bytes(self.int32(), "little")
            return self.refs[index]
        node = _Node(code)
        if flagged:
            # marshal numbers remembered objects when it starts writing them (containers
            # before their children), which is the order we meet them in.
            self.refs.append(node)
        parts = node.parts
        if code in _FIXED:
            parts.append(self.take(_FIXED[code]))
        elif code in _LEN32_BYTES:
            size = self.int32()
            parts.append(size + self.take(int.from_bytes(size, "little")))
        elif code in _LEN8_BYTES:
            size = self.take(1)
            parts.append(size + self.take(size[0]))
        elif code == ord("l"):  # long: signed int32 digit count, then 15-bit digits
            size = self.int32()
            parts.append(size + self.take(2 * abs(int.from_bytes(size, "little", signed=True))))
        elif code == ord("f"):  # old text float
            size = self.take(1)
            parts.append(size + self.take(size[0]))
        elif code == ord("x"):  # old text complex
            for _ in range(2):
                size = self.take(1)
                parts.append(size + self.take(size[0]))
        elif code in _LEN32_OBJECTS:
            size = self.int32()
            parts.append(size)
            parts.extend(self.node() for _ in range(int.from_bytes(size, "little")))
        elif code == ord(")"):  # small tuple
            size = self.take(1)
            parts.append(size)
            parts.extend(self.node() for _ in range(size[0]))
        elif code == ord("{"):  # dict: key, value pairs up to a NULL
            while self.data[self.pos : self.pos + 1] != b"0":
                parts.append(self.node())
                parts.append(self.node())
            parts.append(self.take(1))
        elif code == ord(":"):  # slice (marshal version 5, 3.14)
            parts.extend(self.node() for _ in range(3))
        elif code == ord("c"):
            for kind in _CODE_LAYOUT:
                parts.append(self.int32() if kind == "i" else self.node())
        else:
            raise ValueError(
                f"unsupported marshal type code {chr(code)!r} at offset {self.pos - 1}"
            )
        return node


# Immutable values that may be shared freely: what compile()'s own constant merging shares.
# Code objects are left distinct, and lists, dicts and sets are mutable.
_MERGEABLE_CONTAINERS = {ord(c) for c in "()>:"}


def _merge_equal(root: _Node) -> None:
    """Make equal immutable values one node (maximal sharing), bottom-up.

    The sharing compile() leaves behind is not a function of the source alone: when a code
    object is created, CPython interns its identifier-like string constants, including those
    inside tuple and frozenset constants, and rebuilds such a tuple or frozenset if interning
    swapped an element for an equal string that was already interned by someone else. So a
    frozenset that two functions share after a fresh compile becomes two equal frozensets in a
    process that already holds a string of it (measured: ftplib on 3.12, compiled after another
    copy of itself). Sharing every equal value takes that history out of the graph.

    Whether a string is interned has the same history: a code object interns its name,
    qualname and variable names in place, which interns the very constant the compiler used
    for them (e.g. a class body's `__qualname__`) -- unless an equal string was interned
    earlier, in which case the slot gets the old object and the constant stays a plain string
    (measured: csv on 3.13 after another copy of itself). So strings are merged by text, and
    the merged value is interned if any occurrence was: texts that a code object interns are
    always interned somewhere in the graph, whatever the process did before.
    """
    reps: list = []  # representative nodes
    by_key: dict = {}  # structural key -> index in reps
    rep_of: dict = {}  # id(node) -> index in reps

    stack = [(root, False)]  # iterative post-order over the DAG
    while stack:
        node, children_done = stack.pop()
        if id(node) in rep_of:
            continue
        if not children_done:
            stack.append((node, True))
            stack.extend(
                (p, False) for p in node.parts if isinstance(p, _Node) and id(p) not in rep_of
            )
            continue
        parts = node.parts
        for i, part in enumerate(parts):
            if isinstance(part, _Node):
                parts[i] = reps[rep_of[id(part)]]
        if node.code in _CONTAINERS and node.code not in _MERGEABLE_CONTAINERS:
            key = ("distinct", id(node))
        else:
            fields = [rep_of[id(p)] if isinstance(p, _Node) else p for p in parts]
            if node.is_set:  # frozenset: element order is not part of the value
                fields = fields[:1] + sorted(fields[1:])
            key = (_UNINTERNED.get(node.code, node.code), tuple(fields))
        index = by_key.get(key)
        if index is None:
            index = by_key[key] = len(reps)
            reps.append(node)
        elif node.code in _UNINTERNED:  # the same text seen interned: the value is interned
            reps[index].code = node.code
        rep_of[id(node)] = index


def _in_degrees(root: _Node) -> dict:
    """How many edges of the object graph (not of its expansion) point at each node."""
    counts = {id(root): 1}
    stack = [root]
    while stack:
        for part in stack.pop().parts:
            if isinstance(part, _Node):
                seen = id(part) in counts
                counts[id(part)] = counts.get(id(part), 0) + 1
                if not seen:
                    stack.append(part)
    return counts


class _Writer:
    """Writes a graph with FLAG_REF on exactly the nodes reached by more than one edge."""

    def __init__(self, root: _Node, keys: dict) -> None:
        self.counts = _in_degrees(root)
        self.index: dict = {}
        self.out: list = []
        self.keys = keys  # id(node) -> standalone canonical bytes, shared cache for set sorting
        self.write(root)

    def write(self, node: _Node) -> None:
        out = self.out
        index = self.index.get(id(node))
        if index is not None:
            out.append(bytes([_REF]) + index.to_bytes(4, "little"))
            return
        if self.counts[id(node)] > 1 and node.code not in _SINGLETONS:
            self.index[id(node)] = len(self.index)
            out.append(bytes([node.code | _FLAG_REF]))
        else:
            out.append(bytes([node.code]))
        parts = node.parts
        if node.is_set:
            out.append(parts[0])
            children = sorted(parts[1:], key=lambda child: _standalone(child, self.keys))
            for child in children:
                self.write(child)
            return
        for part in parts:
            if isinstance(part, _Node):
                self.write(part)
            else:
                out.append(part)


def _standalone(node: _Node, keys: dict) -> bytes:
    key = keys.get(id(node))
    if key is None:
        key = keys[id(node)] = b"".join(_Writer(node, keys).out)
    return key


def canonical_marshal(data: bytes) -> bytes:
    """marshal bytes rewritten into a form that depends only on the object graph they encode:
    FLAG_REF exactly on objects referred to more than once, sets in sorted order."""
    parser = _Parser(data)
    root = parser.node()
    if parser.pos != len(data):
        raise ValueError(f"marshal data has {len(data) - parser.pos} bytes after the object")
    _merge_equal(root)
    return b"".join(_Writer(root, {}).out)


# ------------------------------------------------------------------------------------------------
# Target side: compiling
# ------------------------------------------------------------------------------------------------

_PREPARED = False


def _prepare_process() -> None:
    """Make the interned state of the cached one-character strings independent of the history
    of this process (see 3. in the module docstring)."""
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
    compiled, skipped, errors = 0, [], []
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


# Loads this file as a module in a fresh interpreter without putting its directory (or the
# current one) on sys.path, so nothing next to it can shadow a stdlib module.
_BOOTSTRAP = (
    "import sys; del sys.path[0]; import importlib.util as u; "
    "s = u.spec_from_file_location('_lambda_rules_bytecode_worker', sys.argv[1]); "
    "m = u.module_from_spec(s); s.loader.exec_module(m); sys.exit(m._worker(sys.argv[2:]))"
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
            [sys.executable, "-S", "-s", "-B", "-c", _BOOTSTRAP, os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_worker_env(),
        )
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


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="bytecode.py",
        description="Write reproducible unchecked-hash .pyc files next to every .py under a tree, "
        "for this interpreter's version.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compile", help="compile a tree in place")
    c.add_argument("--root", required=True, help="the tree (the package's /var/task or /opt)")
    c.add_argument(
        "--prefix", required=True, help="where Lambda loads it from: /var/task, /opt/python"
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
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if not os.path.isdir(args.root):
        parser.error(f"--root {args.root} is not a directory")
    third_party = list(args.third_party)
    if args.third_party_list:
        with open(args.third_party_list, encoding="utf-8") as f:
            third_party += [line.strip() for line in f if line.strip()]
    report = compile_in_place(
        args.root,
        args.prefix,
        workers=args.workers,
        third_party=third_party,
        skip_invalid=args.on_invalid == "skip",
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


if __name__ == "__main__":
    sys.exit(main())
