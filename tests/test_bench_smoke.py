"""The benchmark harness (bench/) still works. Only the tables' shape is checked, never a timing.

The Pants builds are left out (minutes each); the size and cold-start tables they feed are built
here from two tiny archives instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List

from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
import bench_coldstart  # noqa: E402
import bench_pants  # noqa: E402
from common import Artifact  # noqa: E402


def table(markdown: str, first_header_cell: str) -> Dict[str, List[str]]:
    """The markdown table whose header starts with `first_header_cell`: {first cell: row}."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header_cell} |"))
    rows = {}
    for line in [lines[start], *lines[start + 2 :]]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells
    return rows


def test_quick_zipper_run_writes_machine_and_table(tmp_path):
    output = tmp_path / "RESULTS.md"
    printed = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "bench/run"),
            "--quick",
            "--only=zipper",
            f"--output={output}",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    written = output.read_text()
    assert printed == written
    for fact in (
        "usable cores",
        "Harness Python",
        "Pants 2.17.1",
        "pex 2.",
        "deflate 0.8.1",
        "zip 3.0",
    ):
        assert fact in written
    rows = table(written, "candidate")
    assert rows["candidate"][:5] == [
        "candidate",
        "MB/s",
        "median wall s",
        "output bytes",
        "peak RSS MiB",
    ]
    assert {
        "lambda-zip, 1 worker",
        "lambda-zip --store",
        "zip -r -X -D -6",
        "zipfile level 6",
    } <= set(rows)
    assert all(len(row) == len(rows["candidate"]) for row in rows.values())


def _archive(path: Path, files: Dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def test_size_and_cold_start_tables(tmp_path):
    ours = Artifact(
        "ours", _archive(tmp_path / "ours.zip", {"app.py": "def handler(): pass\n"}), "app"
    )
    builtin = Artifact(
        "built-in",
        _archive(
            tmp_path / "builtin.zip",
            {"app.py": "def handler(): pass\n", "lambda_function.py": "from app import handler\n"},
        ),
        "lambda_function",
    )

    sizes = table(bench_pants.size_section(ours, builtin), "artifact")
    assert sizes["artifact"] == ["artifact", "zip bytes", "unzipped bytes", "entries", "files"]
    assert sizes["ours"][3:] == ["1", "1"] and sizes["built-in"][3:] == ["2", "2"]
    assert set(sizes) == {"artifact", "ours", "built-in", "ours / built-in"}

    cold_start = table(bench_coldstart.section(ours, builtin, runs=2), "artifact")
    assert cold_start["artifact"] == ["artifact", "imports", "median ms", "min ms", "max ms"]
    assert cold_start["built-in"][1] == "`import lambda_function`"
    assert set(cold_start) == {"artifact", "ours", "built-in", "ours / built-in"}


def test_bytecode_table(tmp_path):
    import bench_bytecode

    plain = _archive(tmp_path / "plain.zip", {"app.py": "X = 1\n"})
    compiled = _archive(
        tmp_path / "compiled.zip",
        {"app.py": "X = 1\n", "__pycache__/app.cpython-312.pyc": "not read\n"},
    )
    text = bench_bytecode.section([bench_bytecode.Pair("tiny", plain, compiled, "app")], runs=2)
    imports = table(text, "function")
    assert imports["function"][:5] == [
        "function",
        "imports",
        "without ms",
        "with ms",
        "with / without",
    ]
    assert imports["tiny"][1] == "`import app`"
    size_table = text[text.index("Size cost:") :]
    sizes = table(size_table, "function")
    assert sizes["tiny"][-1] == "1 → 2"


def test_heavy_clone_setup(tmp_path):
    """The bench-only `heavy` resolve goes into a clone's pants.toml and BUILD files only."""
    import bench_heavy

    (tmp_path / "fn").mkdir()
    (tmp_path / "pants.toml").write_text((REPO_ROOT / "pants.toml").read_text())
    (tmp_path / "fn/BUILD").write_text((REPO_ROOT / "fn/BUILD").read_text())
    bench_heavy.prepare(tmp_path, functions=2)
    config = (tmp_path / "pants.toml").read_text()
    assert f'heavy = "{bench_heavy.LOCKFILE}"' in config and 'heavy = ["CPython==3.12.*"]' in config
    assert (REPO_ROOT / bench_heavy.LOCKFILE).exists()
    build = (tmp_path / "heavy/BUILD").read_text()
    assert build.count("lambda_function(") == 3 and build.count("python_awslambda(") == 2
    assert "compile_bytecode=True" in build and "lambda_pyc" in (tmp_path / "fn/BUILD").read_text()
    assert sorted(p.name for p in (tmp_path / "heavy").glob("fn_*.py")) == ["fn_0.py", "fn_1.py"]
    compile((tmp_path / "heavy/fn_1.py").read_text(), "fn_1.py", "exec")


def test_api_clone_setup(tmp_path):
    """The bench-only `api` resolve goes into a clone's pants.toml and BUILD files only, and its
    lockfile locks what the requirements file pins."""
    import bench_api

    (tmp_path / "pants.toml").write_text((REPO_ROOT / "pants.toml").read_text())
    bench_api.prepare(tmp_path, functions=2)
    config = (tmp_path / "pants.toml").read_text()
    assert f'api = "{bench_api.LOCKFILE}"' in config and 'api = ["CPython==3.12.*"]' in config
    build = (tmp_path / "api/BUILD").read_text()
    assert build.count("lambda_function(") == 2 and build.count("python_awslambda(") == 2
    for n in range(2):
        compile((tmp_path / f"api/fn_{n}.py").read_text(), f"fn_{n}.py", "exec")
    lock = (REPO_ROOT / bench_api.LOCKFILE).read_text()
    pins = bench_api.REQUIREMENTS.read_text().split()
    assert all("==" in pin and f'//     "{pin}"' in lock for pin in pins)
    assert 25 <= bench_api.locked_count() <= 30


def test_api_tables_from_workunit_logs(tmp_path):
    """Goal time from a workunit log, the two rows per scenario, the slopes, the process note."""
    import json

    import bench_api
    from common import goal_seconds

    log = tmp_path / "run.json"
    log.write_text(
        json.dumps(
            [
                {"name": "pants.core.goals.package.package_asset", "description": "`package` goal",
                 "duration_secs": 2, "duration_nanos": 500_000_000},
                {"name": "process", "description": "Compress x", "duration_secs": 1,
                 "duration_nanos": 0},
            ]
        )
    )  # fmt: skip
    assert goal_seconds(log) == 2.5
    processes = [
        {
            "description": "Compress 26 small distributions: a 1 for python3.12, b 2",
            "source": "Ran",
        },
        {"description": "Compress botocore 1.44.8 for python3.12 on x86_64", "source": "Ran"},
        {"description": "Zip api:fn1 (python3.12 on x86_64)", "source": "Ran"},
        {"description": "Zip api:fn0 (python3.12 on x86_64)", "source": "Ran"},
    ]
    note = bench_api.process_note("ours", processes, 2)
    assert '2 "Compress" processes for 27 distributions' in note and "2× Zip api:fn<N>" in note

    def runs(whole: float) -> bench_api.Runs:
        return {kind: [bench_api.Run(whole, whole / 2, processes)] for kind in bench_api.KINDS}

    rows = bench_api._rows("one function", runs(10.0))
    assert [row[0] for row in rows] == ["one function: whole run", "one function: `package` goal"]
    assert rows[1][1:4] == ("5.00", "5.00", "1.00")
    slopes = bench_api.slope_rows({(1, False): runs(10.0), (3, False): runs(16.0)}, [1, 3])
    assert slopes[0] == ("1 → 3, no pantsd: whole run", "3.00", "3.00", "1.00")


def test_package_recipes_and_measure(tmp_path):
    """The three recipes are the documented commands, and `measure` reports a real peak RSS."""
    import bench_package
    from common import measure

    tools = bench_package.Tools(tmp_path / "venv")
    function = bench_package.functions()[0]
    caches = bench_package.Caches(tmp_path / "caches")
    argvs = {
        tool: " ".join(map(str, bench_package.command(
            tool, tools, function, tmp_path / "src", tmp_path / "out.zip", caches
        )[0]))
        for tool in bench_package.TOOLS
    }  # fmt: skip
    assert "lambda-zip package" in argvs["lambda-zip"] and "--lockfile" in argvs["lambda-zip"]
    assert (
        "--platform manylinux2014_x86_64 --only-binary=:all: --python-version 3.12"
        in argvs["pip + zip"]
        and "zip -X -D -r" in argvs["pip + zip"]
    )
    assert "uv pip install" in argvs["uv + zip"] and "x86_64-manylinux2014" in argvs["uv + zip"]
    env = caches.env(tools)
    assert env["PIP_CONFIG_FILE"] == os.devnull and not any(
        name.startswith("PIP_") and name not in {"PIP_CONFIG_FILE", "PIP_CACHE_DIR",
                                                 "PIP_DISABLE_PIP_VERSION_CHECK"}
        for name in env
    )  # fmt: skip
    measured = measure([sys.executable, "-c", "b = bytearray(64 << 20)"], env={})
    assert measured.seconds > 0 and measured.peak_kib > 60 * 1024
