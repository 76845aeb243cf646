"""The files the rules ship into sandboxes are all the files those programs import.

A module of ours imported by the tool or a script but not declared in `sandbox_files` would fail
only inside a Pants sandbox; here it fails at once, naming the importer and the missing file.
"""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from lambda_rules import sandbox_files
from lambda_rules.sandbox_files import SOURCE_ROOT, FileSet
from tests.conftest import write_tree


def _imported_modules(path: Path) -> set[str]:
    """Every module an import statement of `path` names (relative imports made absolute)."""
    package = ".".join(Path(path).relative_to(SOURCE_ROOT).with_suffix("").parts[:-1])
    modules = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            modules.add(base)
            # `from lambda_rules import facts` imports a module, not a name.
            modules.update(f"{base}.{alias.name}" for alias in node.names)
    return modules


def _module_file(module: str) -> str | None:
    """The file of one of our modules, relative to SOURCE_ROOT, or None if it is not ours."""
    parts = module.split(".")
    for candidate in (Path(*parts).with_suffix(".py"), Path(*parts, "__init__.py")):
        if (SOURCE_ROOT / candidate).is_file():
            return candidate.as_posix()
    return None


def missing_files(file_set: FileSet) -> list[str]:
    """'importer: module (file)' for every module of ours a shipped file imports unshipped."""
    shipped = set(file_set.paths())
    problems = []
    for path in sorted(shipped):
        for module in sorted(_imported_modules(SOURCE_ROOT / path)):
            if not module.startswith("lambda_rules"):
                continue
            parts = module.split(".")
            # The module and every package above it run their files.
            needed = (_module_file(".".join(parts[:n])) for n in range(1, len(parts) + 1))
            for file in filter(None, needed):
                if file not in shipped:
                    problems.append(f"{path}: {module} ({file})")
    return problems


FILE_SETS = ["ZIPPER", "TOOL", "INVOKER", "BYTECODE_COMPILER", "WHEEL_UNPACKER"]


@pytest.mark.parametrize("name", FILE_SETS)
def test_every_imported_module_of_ours_is_shipped(name):
    file_set = getattr(sandbox_files, name)
    assert file_set.paths(), f"{name} matches no files"
    unmatched = [p for p in file_set.patterns if not FileSet((p,)).paths()]
    assert unmatched == [], f"{name}: patterns that match no file"
    assert missing_files(file_set) == []


def test_the_invoker_and_the_bytecode_compiler_share_only_package_markers():
    """Their files are inputs of their processes: editing one must not rerun the other's."""
    shared = set(sandbox_files.INVOKER.paths()) & set(sandbox_files.BYTECODE_COMPILER.paths())
    assert shared == {"lambda_rules/__init__.py", "lambda_rules/scripts/__init__.py"}


def test_the_zipper_is_part_of_the_tool_and_imports_only_its_requirements():
    """The rules compile the tool's files once and give the zipper's processes only its own, so
    an edit of the SBOM writer recompresses nothing; the zipper's sandbox holds the stdlib, its
    files and `ZIPPER_REQUIREMENTS` (distribution names, here the same as their modules')."""
    assert set(sandbox_files.ZIPPER.paths()) < set(sandbox_files.TOOL.paths())
    foreign = sorted(
        {
            module.split(".")[0]
            for path in sandbox_files.ZIPPER.paths()
            for module in _imported_modules(SOURCE_ROOT / path)
            if module.split(".")[0] not in ("lambda_rules", "__future__") and not _is_stdlib(module)
        }
    )
    assert foreign == sorted(sandbox_files.ZIPPER_REQUIREMENTS)


def test_a_file_set_without_an_imported_module_is_caught():
    without_facts = FileSet(
        tuple(p for p in sandbox_files.TOOL.patterns if p != "lambda_rules/facts.py")
    )
    problems = missing_files(without_facts)
    assert "lambda_rules/platforms.py: lambda_rules.facts (lambda_rules/facts.py)" in problems


def _is_stdlib(module: str) -> bool:
    top = module.split(".")[0]
    if top in sys.builtin_module_names:
        return True
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None:
        return False
    stdlib = sysconfig.get_paths()["stdlib"]
    return spec.origin.startswith(stdlib) and "site-packages" not in spec.origin


@pytest.mark.parametrize("name", ["INVOKER", "BYTECODE_COMPILER"])
def test_scripts_import_only_the_standard_library_and_each_other(name):
    """They run under the runtime's bare CPython or Pants' interpreter: nothing else is there."""
    foreign = sorted(
        f"{path}: {module}"
        for path in getattr(sandbox_files, name).paths()
        for module in _imported_modules(SOURCE_ROOT / path)
        if module.split(".")[0] not in ("lambda_rules", "__future__") and not _is_stdlib(module)
    )
    assert foreign == []


@pytest.mark.parametrize("name", ["ZIPPER", "TOOL"])
def test_the_tool_runs_from_its_shipped_files_alone(tmp_path, name):
    """Copies exactly the declared files and runs `build` from them, isolated: the zipper with a
    copy of deflate alone on its path (as its sandbox has), the tool with this venv's packages."""
    import deflate

    write_tree(tmp_path / "tool", getattr(sandbox_files, name).read())
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "app.py").write_text("def handler(event, context):\n    return 1\n")
    requirements = Path(deflate.__file__).parent.parent
    if name == "ZIPPER":
        shutil.copytree(Path(deflate.__file__).parent, tmp_path / "deps" / "deflate")
        requirements = tmp_path / "deps"
    program = sandbox_files.entry_program(
        getattr(sandbox_files, f"{name}_MODULE"), (str(tmp_path / "tool"), str(requirements))
    )
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-B",
            "-c",
            program,
            "build",
            str(tmp_path / "tree"),
            "-o",
            str(tmp_path / "out.zip"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.zip").is_file()
