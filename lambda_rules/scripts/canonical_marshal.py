"""marshal bytes rewritten into a form that depends only on the code object they encode.

`bytecode.py` writes `canonical_marshal(marshal.dumps(code))` into every `.pyc`, because
marshal's own output also depends on the hash seed and on what else lives in the compiling
process. Like `bytecode.py` it runs under the runtime's CPython (3.9 to 3.14) and imports only
the standard library.

What varies in marshal's output, and what this module does about it (measured on CPython 3.9.18,
3.10.13, 3.11.7, 3.12.1, 3.13.0; tests/test_bytecode.py keeps proving it):

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

Which equal constants end up shared, and which strings interned, has process history of its own:
`_merge_equal` takes it out of the graph before writing.
"""

from __future__ import annotations

import sys

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
        key: tuple[object, object]
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
