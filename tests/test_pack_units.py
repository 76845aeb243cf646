"""The resolve's packer, run as the rules run it: from its shipped files alone, isolated, after a
command that lays out a flat site-packages (pex in the rules, a copy here)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from lambda_rules import pieces, sandbox_files, units
from lambda_rules.zipper.cli import main as zipper
from tests.conftest import file_sha256_hex, write_tree

SITE_PACKAGES = {
    "six.py": "X = 1\n",
    "six-1.16.0.dist-info/METADATA": "Name: six\nVersion: 1.16.0\n",
    "six-1.16.0.dist-info/WHEEL": "Wheel-Version: 1.0\n",
    "six-1.16.0.dist-info/RECORD": "six.py,,\nsix-1.16.0.dist-info/METADATA,,\n"
    "six-1.16.0.dist-info/WHEEL,,\nsix-1.16.0.dist-info/RECORD,,\n",
    "tool/__init__.py": "",
    "tool/run.sh": "#!/bin/sh\n",
    "tool/__pycache__/__init__.cpython-312.pyc": b"\x00",
    "Tool_Kit-2.0.dist-info/METADATA": "Name: Tool_Kit\nVersion: 2.0\n",
    "Tool_Kit-2.0.dist-info/RECORD": "tool/__init__.py,,\ntool/run.sh,,\n"
    "Tool_Kit-2.0.dist-info/METADATA,,\nTool_Kit-2.0.dist-info/RECORD,,\n",
    "pip/__init__.py": "",
    "pip-24.0.dist-info/RECORD": "pip/__init__.py,,\n",
    "stray.pth": "import os\n",
}


def _run_packer(
    tmp_path: Path, command: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    write_tree(tmp_path / "packer", sandbox_files.UNIT_PACKER.read())
    program = sandbox_files.entry_program(
        sandbox_files.UNIT_PACKER_MODULE, (str(tmp_path / "packer"),)
    )
    argv = [sys.executable, "-I", "-S", "-B", "-c", program]
    argv += ["--site-packages", "site-packages", "--out", "units", "--", *command]
    return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=env)


def _archive_sha256(packed: Path) -> str:
    with pieces.open_input(packed) as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_each_unit_is_packed_stored_and_repacks_to_a_build_of_its_files(tmp_path):
    source = write_tree(tmp_path / "source", SITE_PACKAGES)
    os.chmod(source / "tool/run.sh", 0o755)
    copy = f"import shutil; shutil.copytree({str(source)!r}, 'site-packages', symlinks=True)"
    result = _run_packer(tmp_path, [sys.executable, "-c", copy])
    assert result.returncode == 0, result.stderr

    listed = json.loads((tmp_path / "units/units.json").read_text())["units"]
    assert [u["distribution"] for u in listed] == [["six", "1.16.0"], ["tool-kit", "2.0"], None]
    records = {
        p: (source / p).read_bytes() for p in SITE_PACKAGES if p.endswith(".dist-info/RECORD")
    }
    split = units.split_distributions(SITE_PACKAGES, records)
    assert [u["paths"] for u in listed] == [list(plan.paths) for plan in split.units]
    assert listed[2]["paths"] == ["stray.pth"] and listed[2]["size"] == len("import os\n")
    for index, plan in enumerate(split.units):
        tree = write_tree(tmp_path / f"unit-{index}", {p: SITE_PACKAGES[p] for p in plan.paths})
        if "tool/run.sh" in plan.paths:
            os.chmod(tree / "tool/run.sh", 0o755)
        built, repacked = tmp_path / f"built-{index}.zip", tmp_path / f"repacked-{index}.zip"
        assert zipper(["build", str(tree), "-o", str(built)]) == 0
        stored = tmp_path / f"units/{index}.zip{pieces.SUFFIX}"
        assert zipper(["repack", str(stored), "-o", str(repacked)]) == 0
        assert file_sha256_hex(repacked) == file_sha256_hex(built)
    metadata = sorted(
        p.relative_to(tmp_path / "units/dist-info").as_posix()
        for p in (tmp_path / "units/dist-info").rglob("*")
        if p.is_file()
    )
    assert metadata == [
        "Tool_Kit-2.0.dist-info/METADATA",
        "six-1.16.0.dist-info/METADATA",
        "six-1.16.0.dist-info/WHEEL",
    ]


def test_the_same_files_pack_to_the_same_bytes_whatever_the_umask_and_mtimes(tmp_path):
    digests = []
    for run, umask in enumerate((0o022, 0o077)):
        source = write_tree(tmp_path / f"source-{run}", SITE_PACKAGES)
        os.chmod(source / "tool/run.sh", 0o755)
        for path in source.rglob("*"):
            os.utime(path, (run * 1e9, run * 1e9), follow_symlinks=False)
        copy = (
            f"import os, shutil; os.umask({umask}); "
            f"shutil.copytree({str(source)!r}, 'site-packages')"
        )
        workdir = tmp_path / f"run-{run}"
        workdir.mkdir()
        assert _run_packer(workdir, [sys.executable, "-c", copy]).returncode == 0
        digests.append(
            [_archive_sha256(workdir / f"units/{i}.zip{pieces.SUFFIX}") for i in range(3)]
            + [file_sha256_hex(workdir / "units/units.json")]
        )
    assert digests[0] == digests[1]


def test_a_unit_larger_than_a_piece_is_packed_in_pieces_pants_stores_apart(tmp_path):
    """Each piece is below Pants' large-file size, and together they are the stored archive."""
    blob = bytes(range(256)) * 5000  # 1,280,000 bytes
    files = {"big/__init__.py": "", "big/blob.bin": blob, "big-1.0.dist-info/METADATA": ""}
    files["big-1.0.dist-info/RECORD"] = "".join(f"{path},,\n" for path in files)
    source = write_tree(tmp_path / "source", files)
    copy = f"import shutil; shutil.copytree({str(source)!r}, 'site-packages')"
    assert _run_packer(tmp_path, [sys.executable, "-c", copy]).returncode == 0

    packed = tmp_path / f"units/0.zip{pieces.SUFFIX}"
    sizes = [piece.stat().st_size for piece in sorted(packed.iterdir())]
    assert len(sizes) == 3 and max(sizes) < 512 * 1024
    built, repacked = tmp_path / "built.zip", tmp_path / "repacked.zip"
    tree = write_tree(tmp_path / "tree", files)
    assert zipper(["build", str(tree), "-o", str(built), "--store"]) == 0
    assert _archive_sha256(packed) == file_sha256_hex(built)
    assert zipper(["repack", str(packed), "-o", str(repacked)]) == 0
    assert zipper(["build", str(tree), "-o", str(built)]) == 0
    assert file_sha256_hex(repacked) == file_sha256_hex(built)


def test_a_failing_command_fails_the_packer_with_its_output_and_packs_nothing(tmp_path):
    fail = "import sys; sys.stderr.write('no wheel for numpy\\n'); sys.exit(3)"
    result = _run_packer(tmp_path, [sys.executable, "-c", fail])
    assert result.returncode == 3
    assert "no wheel for numpy" in result.stderr
    assert not (tmp_path / "units").exists()


# Lays out one module and reports the interpreter it ran on, and the PEX_PYTHON it was given.
_REPORT_INTERPRETER = (
    "import json, os, pathlib, sys; pathlib.Path('site-packages').mkdir(); "
    "pathlib.Path('site-packages/m.py').write_text(''); "
    "print(json.dumps([sys.executable, os.environ.get('PEX_PYTHON')]))"
)


def test_pex_starts_on_the_base_interpreter_of_the_virtualenv_it_was_to_start_on(tmp_path):
    """pex would leave the virtualenv and start again on its base interpreter (the tests run in
    one, as ./pants runs Pants): the packer starts it there directly."""
    assert (Path(sys.executable).parent.parent / "pyvenv.cfg").is_file(), "tests run in a venv"
    base = Path(sys.base_prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}")
    env = {**os.environ, "PEX_PYTHON": sys.executable}
    result = _run_packer(tmp_path, [sys.executable, "-c", _REPORT_INTERPRETER], env)
    assert result.returncode == 0, result.stderr
    ran_on, pex_python = json.loads(result.stdout)
    assert ran_on == str(base) != sys.executable
    assert pex_python == str(base)
    assert json.loads((tmp_path / "units/units.json").read_text())["units"][0]["paths"] == ["m.py"]


def test_a_command_on_another_interpreter_is_run_as_given(tmp_path):
    other = Path(sys.base_prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}")
    env = {**os.environ, "PEX_PYTHON": "/elsewhere/python"}
    result = _run_packer(tmp_path, [str(other), "-c", _REPORT_INTERPRETER], env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [str(other), "/elsewhere/python"]
