"""lambda_rules/scripts/bytecode.py against the real pyenv CPythons 3.9-3.13: the .pyc bytes do not
depend on how, where or in what process they were built, and Lambda's interpreter really uses
them. The compiler runs from a copy of exactly its shipped files (`BYTECODE_COMPILER`), as the
Pants rule runs it."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest

from lambda_rules import facts, sandbox_files
from lambda_rules.scripts import interpreters
from tests.conftest import write_tree

MINORS = (9, 10, 11, 12, 13)
# Where the rule puts the compiler's files in the sandbox of a compile process, and what it runs.
COMPILER_DIR = "__lambda_scripts"
ENTRY_PROGRAM = sandbox_files.entry_program(sandbox_files.BYTECODE_COMPILER_MODULE, (COMPILER_DIR,))

TREE = {
    "pkg/__init__.py": 'VERSION = "1.0"\n',
    "pkg/consts.py": textwrap.dedent(
        '''\
        """Set constants, closures, classes, lambdas, comprehensions, f-strings."""
        import re
        KEYWORDS = frozenset({"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"})
        MIXED = frozenset({None, 1, 2.5, "mixed", b"bytes", ("t", 1), -0.0})
        SEP = "."
        VALUE = "original"

        def classify(x):
            if x in {"red", "green", "blue", "cyan", "magenta", "yellow"}:
                return "colour"
            if x not in {"dog", "cat", "héllo wörld", "a b c"}:
                return "other"
            return "animal"

        def outer(n):
            total = 0
            def inner(k):
                nonlocal total
                total += k
                return lambda: total * n
            return [inner(i) for i in range(n)], {k: v for k, v in zip("ab", "cd")}

        class Shape:
            kinds = {"circle", "square"}
            def __init__(self, name):
                self.name = name
            def describe(self, width=3):
                return (
                    f"{self.name!r:>{width}} is "
                    f"{'round' if self.name in {'circle', 'oval'} else 'angular'}"
                )
            class Inner:
                def method(self):
                    return (lambda s: s.upper())("inner")

        PATTERN = re.compile(r"\\d+")  # an invalid-escape-free raw string
        ''',
    ),
    "pkg/repeated.py": "".join(
        f"def f{i}(x):\n    return (x, 'shared string', 'shared string {i % 3}', "
        "12345678901234567890, 1.5, ('t', 'u'))\n"
        for i in range(40)
    )
    + "NAMES = ["
    + ", ".join(f"'name_{i % 7}'" for i in range(60))
    + "]\n",
    "pkg/sub/__init__.py": "",
    "pkg/sub/m.py": textwrap.dedent(
        """\
        def boom():
            raise ValueError("boom from m")
        """
    ),
}

# Runs in the target interpreter: compiles the tree in-process (one long-lived interpreter,
# reversed order, after compiling other copies of the same sources and a few stdlib modules,
# all kept alive), or inspects written pycs.
HELPER = textwrap.dedent(
    """\
    import importlib.util, json, marshal, os, sys
    sys.path.insert(0, sys.argv[1])
    from lambda_rules.scripts import bytecode as bc
    root, mode = sys.argv[2], sys.argv[3]
    files = bc.find_sources(root)
    out = {}
    if mode == "longlived":
        import argparse, email.parser, json.decoder
        keep = [
            compile(open(os.path.join(root, f), "rb").read(), "/elsewhere/" + f, "exec")
            for f in files
        ]
        keep += [sys.intern("shared string 1"), sys.intern("Shape.Inner")]
        for rel in reversed(files):
            src = open(os.path.join(root, rel), "rb").read()
            out[rel] = bc.pyc_bytes(src, bc.code_filename("/var/task", rel), rel).hex()
            keep.append(compile(src, rel, "exec"))
    elif mode == "inspect":
        def filenames(code):
            yield code.co_filename
            for c in code.co_consts:
                if hasattr(c, "co_code"):
                    yield from filenames(c)
        for rel in files:
            pyc = importlib.util.cache_from_source(os.path.join(root, rel))
            data = open(pyc, "rb").read()
            src = open(os.path.join(root, rel), "rb").read()
            out[rel] = {
                "pyc": os.path.relpath(pyc, root),
                "magic_ok": data[:4] == importlib.util.MAGIC_NUMBER,
                "flags": int.from_bytes(data[4:8], "little"),
                "hash_ok": data[8:16] == importlib.util.source_hash(src),
                "filenames": sorted(set(filenames(marshal.loads(data[16:])))),
            }
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def pythons() -> dict[int, Path]:
    return {
        minor: interpreters.find_interpreter(facts.RUNTIMES[f"python3.{minor}"]) for minor in MINORS
    }


def pyc_relpath(rel: str, minor: int) -> str:
    """Where the pyc of the source `rel` goes, relative to the root."""
    return str(Path(rel).parent / "__pycache__" / f"{Path(rel).stem}.cpython-3{minor}.pyc")


def compiled(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.pyc"))}


def compiler_sandbox(directory: Path) -> Path:
    """`directory` holding exactly the compiler's shipped files, where the rule puts them."""
    write_tree(directory / COMPILER_DIR, sandbox_files.BYTECODE_COMPILER.read())
    return directory


def run_cli(python: Path, root: Path, *args: str, seed: str = "0", umask: int = 0o022):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = seed
    # Not -I: the CLI must shield its workers from the caller's environment by itself.
    argv = [str(python), "-c", ENTRY_PROGRAM, "compile", "--root", str(root)]
    with tempfile.TemporaryDirectory() as sandbox:
        compiler_sandbox(Path(sandbox))
        old = os.umask(umask)
        try:
            return subprocess.run(
                [*argv, "--prefix", "/var/task", *args],
                capture_output=True,
                text=True,
                env=env,
                cwd=sandbox,
            )
        finally:
            os.umask(old)


def compile_tree(
    python: Path, root: Path, prefix: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """The compiler run as the Pants rule runs it: in a sandbox holding exactly its files,
    `python3.X -I -B -c <entry program> compile --root ...`."""
    argv = [str(python), "-I", "-B", "-c", ENTRY_PROGRAM, "compile", "--root", str(root)]
    with tempfile.TemporaryDirectory() as sandbox:
        compiler_sandbox(Path(sandbox))
        return subprocess.run(
            [*argv, "--prefix", prefix, *args], capture_output=True, text=True, cwd=sandbox
        )


def helper(python: Path, tmp_path: Path, root: Path, mode: str, seed: str = "0") -> dict:
    script = tmp_path / "helper.py"
    script.write_text(HELPER)
    compiler = compiler_sandbox(tmp_path / "compiler") / COMPILER_DIR
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = seed
    out = subprocess.run(
        [str(python), "-S", "-B", str(script), str(compiler), str(root), mode],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("minor", MINORS)
def test_bytes_do_not_depend_on_seed_workers_order_path_umask_or_process(minor, pythons, tmp_path):
    python = pythons[minor]
    runs = [
        dict(seed="0", workers="1", umask=0o022, where="a/checkout"),
        dict(seed="1", workers="3", umask=0o077, where="b/some/other/deeper/path"),
        dict(seed="12345", workers="2", umask=0o022, where="c"),
        dict(seed="random", workers="1", umask=0o077, where="d/x"),
    ]
    results = []
    for run in runs:
        root = write_tree(tmp_path / run["where"], TREE)
        proc = run_cli(
            python, root, "--workers", run["workers"], seed=run["seed"], umask=run["umask"]
        )
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["compiled"] == 5 and report["skipped"] == []
        assert report["cache_tag"] == f"cpython-3{minor}"
        files = compiled(root)
        assert sorted(files) == sorted(pyc_relpath(rel, minor) for rel in TREE)
        for p in root.rglob("__pycache__"):
            assert stat.S_IMODE(p.stat().st_mode) == 0o755
        for p in root.rglob("*.pyc"):
            assert stat.S_IMODE(p.stat().st_mode) == 0o644
        assert all((root / rel).read_text(encoding="utf-8") == text for rel, text in TREE.items())
        results.append(files)
    for other in results[1:]:
        assert other == results[0]

    # The same bytes from one long-lived interpreter, compiling in reversed order after other
    # copies of the same sources (with the build path as co_filename) are alive in it.
    root = tmp_path / "a/checkout"
    longlived = helper(python, tmp_path, root, "longlived", seed="777")
    for rel in TREE:
        pyc = pyc_relpath(rel, minor)
        assert bytes.fromhex(longlived[rel]) == results[0][pyc], rel

    # PEP 552 unchecked-hash header with this interpreter's magic; co_filename is /var/task/...
    for rel, info in helper(python, tmp_path, root, "inspect").items():
        assert info["pyc"] == pyc_relpath(rel, minor)
        assert info["magic_ok"] and info["hash_ok"]
        assert info["flags"] == 0b01
        assert info["filenames"] == [f"/var/task/{rel}"]


@pytest.mark.parametrize("minor", MINORS)
def test_lambda_uses_the_pyc_from_a_read_only_tree(minor, pythons, tmp_path):
    python = pythons[minor]
    root = write_tree(tmp_path / "build", TREE)
    assert run_cli(python, root).returncode == 0
    task = tmp_path / "task"
    shutil.copytree(root, task)
    # A different source: if the interpreter looked at it (or recompiled), VALUE would change.
    (task / "pkg/consts.py").write_text('VALUE = "changed"\n', encoding="utf-8")
    for p in [task, *task.rglob("*")]:
        p.chmod(stat.S_IMODE(p.stat().st_mode) & ~0o222)
    before = sorted((str(p), p.stat().st_mtime_ns) for p in task.rglob("*"))
    code = textwrap.dedent(
        f"""\
        import sys, traceback
        sys.path.insert(0, {str(task)!r})
        import pkg.consts, pkg.sub.m
        print(pkg.consts.VALUE, pkg.consts.classify("red"), pkg.consts.Shape("circle").describe())
        try:
            pkg.sub.m.boom()
        except ValueError:
            traceback.print_exc(file=sys.stdout)
        # The code as shipped, without the import system's co_filename fix-up.
        import importlib.util, marshal
        pyc = importlib.util.cache_from_source(pkg.sub.m.__file__)
        namespace = {{}}
        exec(marshal.loads(open(pyc, "rb").read()[16:]), namespace)
        try:
            namespace["boom"]()
        except ValueError:
            traceback.print_exc(file=sys.stdout)
        """
    )
    try:
        out = subprocess.run(
            [str(python), "-I", "-c", code], capture_output=True, text=True, check=True
        ).stdout
        after = sorted((str(p), p.stat().st_mtime_ns) for p in task.rglob("*"))
    finally:
        for p in [task, *task.rglob("*")]:
            p.chmod(stat.S_IMODE(p.stat().st_mode) | 0o200)
    assert out.splitlines()[0] == "original colour 'circle' is round"
    # Importing a pyc whose source exists, CPython sets co_filename to where it found the
    # source (importlib's _fix_co_filename): on Lambda that is the /var/task path we compiled
    # in, here it is the test's directory.
    assert f'File "{task}/pkg/sub/m.py", line 2, in boom' in out
    # The shipped code object itself says /var/task (what a sourceless load would show).
    assert 'File "/var/task/pkg/sub/m.py", line 2, in boom' in out
    assert after == before  # nothing written (we may run as root, so read-only alone proves little)


def test_naive_marshal_varies_with_the_hash_seed_and_ours_does_not(pythons, tmp_path):
    """The hazard: marshal writes a set constant in iteration order, i.e. in PYTHONHASHSEED order
    (measured here on 3.9 and 3.10; 3.11+ marshal sorts sets). Ours is the same for every seed."""
    root = write_tree(tmp_path / "t", {"consts.py": TREE["pkg/consts.py"]})
    naive = (
        "import marshal, sys, hashlib; "
        "c = compile(open(sys.argv[1], 'rb').read(), '/var/task/consts.py', 'exec', "
        "dont_inherit=True, optimize=0); "
        "print(hashlib.sha256(marshal.dumps(c)).hexdigest())"
    )
    varying = []
    for minor, python in pythons.items():
        digests = set()
        for seed in ("0", "1", "12345"):
            env = {"PYTHONHASHSEED": seed, "PATH": os.environ.get("PATH", "")}
            digests.add(
                subprocess.run(
                    [str(python), "-S", "-c", naive, str(root / "consts.py")],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=True,
                ).stdout
            )
        if len(digests) > 1:
            varying.append(minor)
        ours = []
        for seed in ("0", "1", "12345"):
            assert run_cli(python, root, seed=seed).returncode == 0
            ours.append(compiled(root))
        assert ours[0] == ours[1] == ours[2]
    assert 9 in varying and 10 in varying, varying


def test_first_party_syntax_error_names_file_and_line(pythons, tmp_path):
    root = write_tree(tmp_path / "t", {**TREE, "pkg/bad.py": "x = 1\n\ndef f(:\n    pass\n"})
    result = compile_tree(pythons[12], root, "/var/task")
    assert result.returncode == 1 and result.stdout == ""
    assert "pkg/bad.py:3: SyntaxError" in result.stderr
    assert "CPython 3.12" in result.stderr


def test_third_party_sources_that_do_not_compile_are_skipped_like_pip(pythons, tmp_path):
    files = {
        **TREE,
        "lib2to3/tests/data/py2_test_grammar.py": "print 'hello'\n",
        "somedist/tests/bad_syntax.py": "def (:\n",
        "somedist/ok.py": "X = 1\n",
    }
    root = write_tree(tmp_path / "t", files)
    third_party = ["--third-party", "lib2to3", "--third-party", "somedist/"]
    result = compile_tree(pythons[11], root, "/opt/python", "--workers", "2", *third_party)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["compiled"] == len(TREE) + 1
    assert [s["path"] for s in report["skipped"]] == [
        "lib2to3/tests/data/py2_test_grammar.py",
        "somedist/tests/bad_syntax.py",
    ]
    assert not (root / "somedist/tests/__pycache__").exists()
    assert (root / "somedist/__pycache__/ok.cpython-311.pyc").exists()
    # The same invalid file outside the third-party paths is an error; --on-invalid skip skips it.
    result = compile_tree(pythons[11], root, "/opt/python", "--third-party", "lib2to3")
    assert result.returncode == 1 and "somedist/tests/bad_syntax.py:1" in result.stderr
    result = compile_tree(pythons[11], root, "/opt/python", "--on-invalid", "skip")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["skipped"]) == 2


def test_workers_import_the_compiler_the_parent_was_loaded_from(pythons, tmp_path):
    """Neither the caller's directory nor its PYTHONPATH reaches the compiler or its workers:
    a `lambda_rules` or a stdlib module's name there is never imported."""
    decoys = {
        "lambda_rules/__init__.py": "raise SystemExit('a decoy lambda_rules was imported')\n",
        "json.py": "raise SystemExit('a decoy json was imported')\n",
    }
    caller = write_tree(tmp_path / "caller", decoys)
    env = {**os.environ, "PYTHONPATH": str(write_tree(tmp_path / "pythonpath", decoys))}
    sandbox = compiler_sandbox(tmp_path / "sandbox")
    program = sandbox_files.entry_program(
        sandbox_files.BYTECODE_COMPILER_MODULE, (str(sandbox / COMPILER_DIR),)
    )
    root = write_tree(tmp_path / "t", TREE)
    argv = [str(pythons[9]), "-I", "-B", "-c", program, "compile", "--root", str(root)]
    result = subprocess.run(
        [*argv, "--prefix", "/var/task", "--workers", "2"],
        capture_output=True,
        text=True,
        cwd=caller,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["compiled"] == len(TREE)
    expected = write_tree(tmp_path / "expected", TREE)
    assert compile_tree(pythons[9], expected, "/var/task").returncode == 0
    assert compiled(root) == compiled(expected)


def test_a_packed_unit_is_unpacked_with_its_exec_bits_then_compiled(pythons, tmp_path):
    """The rules hand a distribution to the compiler as the stored archive the resolve packed, in
    pieces: the tree it compiles is the unit's files, with their exec bits, wherever the entry
    names point (zipfile keeps them inside the directory)."""
    from lambda_rules.zipper import pieces
    from lambda_rules.zipper.cli import main as zipper

    blob = bytes(range(256)) * 3000  # 768,000 bytes: the archive takes two pieces
    tree = write_tree(tmp_path / "unit", {**TREE, "bin/run.sh": "#!/bin/sh\n", "blob": blob})
    os.chmod(tree / "bin/run.sh", 0o755)
    archive = tmp_path / "unit.zip"
    assert zipper(["build", str(tree), "-o", str(archive), "--store"]) == 0
    packed = tmp_path / f"unit.zip{pieces.SUFFIX}"
    with pieces.create(packed) as written:
        written.write(archive.read_bytes())
    assert len(list(packed.iterdir())) == 2
    root = tmp_path / "staged"
    result = compile_tree(pythons[12], root, "/var/task", "--unpack", str(packed), str(root))
    assert result.returncode == 0, result.stderr
    assert (root / "blob").read_bytes() == blob
    assert json.loads(result.stdout)["compiled"] == len(TREE)
    assert stat.S_IMODE(os.lstat(root / "bin/run.sh").st_mode) == 0o755
    assert stat.S_IMODE(os.lstat(root / "pkg/__init__.py").st_mode) == 0o644
    assert (root / "pkg/__pycache__/__init__.cpython-312.pyc").is_file()
