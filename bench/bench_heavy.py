"""Heavy functions: numpy + pandas on python3.12, our `lambda_function` against the built-in
`python_awslambda` (issue "Distributions as shared, cached units").

- One function, one source file edited, with pantsd.
- Ten functions on the same requirements (different handlers), `package` of all ten with no
  process cache (`--no-local-cache`) but warm named caches (downloads, units): every process
  runs, and ours wins only by Pants memoising identical processes within the run (the ten functions'
  distribution units are identical requests). The workunit logger's log shows how many
  "Compress ..." processes ran. Measured twice: without pantsd, and with a pantsd started first
  with the same options (Pants' own start, the same for both kinds, left out).
- Peak RSS of `lambda-zip merge` over the parts of the numpy + pandas function.

The requirements live in a bench-only resolve, `heavy` (bench/heavy/requirements.txt, lockfile
bench/heavy/heavy.lock), added to the pants.toml of the bench's clones only. numpy and pandas are
pinned below 2.3 because the built-in `python_awslambda` caps wheels at manylinux2014.

    python bench/bench_heavy.py --generate-lockfile    # rewrite bench/heavy/heavy.lock (network)
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from common import (
    REPO_ROOT,
    RUNTIME,
    TIMING_HEADER,
    WORKUNIT_LOGGER,
    add_bench_resolve,
    goal_seconds,
    markdown_table,
    measure,
    runtime_python,
    settle,
    timing_row,
)

HEAVY_DIR = "heavy"  # in the clones, a source root of its own
REQUIREMENTS = REPO_ROOT / "bench/heavy/requirements.txt"
LOCKFILE = "bench/heavy/heavy.lock"
RESOLVE_CONSTRAINTS = '["CPython==3.12.*"]'
FUNCTIONS = 10

HANDLER = '''"""A numpy + pandas function for the benchmarks (number {n})."""

import numpy as np
import pandas as pd


def handler(event, context):
    frame = pd.DataFrame(event.get("rows") or [{{"x": 1, "y": 2.5}}, {{"x": 3, "y": 4.5}}])
    totals = frame.select_dtypes(include=[np.number]).sum()
    return {{"statusCode": 200, "function": {n}, "body": totals.to_json()}}
'''


def ours_name(n: int, bytecode: bool = False) -> str:
    return f"fn{n}_pyc" if bytecode else f"fn{n}"


def builtin_name(n: int) -> str:
    return f"builtin{n}"


def address(name: str) -> str:
    return f"//{HEAVY_DIR}:{name}"


def artifact(root: Path, name: str) -> Path:
    return root / "dist" / HEAVY_DIR / f"{name}.zip"


def handler_module(n: int) -> str:
    return f"fn_{n}"


def prepare(root: Path, functions: int = FUNCTIONS) -> None:
    """Add the `heavy` resolve, the heavy functions and bytecode variants to a clone at `root`."""
    directory = add_bench_resolve(root, HEAVY_DIR, LOCKFILE, RESOLVE_CONSTRAINTS)
    shutil.copy(REQUIREMENTS, directory / "requirements.txt")
    build = [
        'python_requirements(name="reqs", source="requirements.txt", resolve="heavy")',
        f'python_sources(name="src", resolve="heavy", '
        f"interpreter_constraints={RESOLVE_CONSTRAINTS})",
    ]
    for n in range(functions):
        (directory / f"{handler_module(n)}.py").write_text(HANDLER.format(n=n))
        handler = f"{handler_module(n)}.py:handler"
        build += [
            f'lambda_function(name="{ours_name(n)}", handler="{handler}", runtime="{RUNTIME}", '
            f'resolve="heavy")',
            # Without resolve="heavy" it looks for the handler in the default resolve, finds
            # nothing, and packages only its `lambda_function.py` shim.
            f'python_awslambda(name="{builtin_name(n)}", handler="{handler}", runtime="{RUNTIME}", '
            f'resolve="heavy")',
        ]
    build.append(
        f'lambda_function(name="{ours_name(0, True)}", handler="{handler_module(0)}.py:handler", '
        f'runtime="{RUNTIME}", resolve="heavy", compile_bytecode=True)'
    )
    (directory / "BUILD").write_text("\n".join(build) + "\n")
    # The README example with bytecode, for the bytecode section.
    with (root / "fn/BUILD").open("a") as fn_build:
        fn_build.write(
            f'\nlambda_function(name="lambda_pyc", handler="app.py:handler", runtime="{RUNTIME}", '
            f"compile_bytecode=True)\n"
        )


# ---------------------------------------------------------------------------------------------
# Pants scenarios


def check_contents(root: Path, names: Sequence[str]) -> None:
    """Each artifact holds numpy, pandas and its handler's module: a guard against packaging
    less."""
    for name in names:
        with zipfile.ZipFile(artifact(root, name)) as archive:
            paths = set(archive.namelist())
        module = handler_module(
            int(name.removeprefix("builtin").removeprefix("fn").partition("_")[0])
        )
        missing = {"numpy/__init__.py", "pandas/__init__.py", f"{module}.py"} - paths
        if missing:
            raise RuntimeError(f"{artifact(root, name)} lacks {', '.join(sorted(missing))}")


def _timed(clone, *args: str, pantsd: bool = False) -> Tuple[float, str]:
    settle()
    start = time.perf_counter()
    result = clone.pants(*args, pantsd=pantsd, timeout=3600)
    return time.perf_counter() - start, result.stderr


def edit_builds(workspace, runs: int) -> Tuple[Dict[str, List[float]], Dict[str, List[float]]]:
    """No-op rebuilds and one-file edits of fn_0.py, one warm pantsd, ours and built-in
    alternately."""
    clone = workspace.clone()
    caches = workspace.empty_caches()
    names = {"ours": ours_name(0), "built-in": builtin_name(0)}
    noop: Dict[str, List[float]] = {label: [] for label in names}
    edited: Dict[str, List[float]] = {label: [] for label in names}
    try:
        clone.pants(
            *caches, "package", *map(address, names.values()), pantsd=True, timeout=3600
        )  # warms up
        check_contents(clone.root, list(names.values()))
        for _ in range(runs):
            for label, name in names.items():
                noop[label].append(_timed(clone, *caches, "package", address(name), pantsd=True)[0])
        for run in range(runs):
            for label, name in names.items():
                before = artifact(clone.root, name).read_bytes()
                with (clone.root / HEAVY_DIR / f"{handler_module(0)}.py").open("a") as source:
                    source.write(f"# edit {run} before building {name}\n")
                edited[label].append(
                    _timed(clone, *caches, "package", address(name), pantsd=True)[0]
                )
                if artifact(clone.root, name).read_bytes() == before:
                    raise RuntimeError(
                        f"pantsd did not see the edit: {artifact(clone.root, name)} is unchanged"
                    )
    finally:
        clone.kill_pantsd()
    return noop, edited


def logged_processes(logdir: Path) -> List[dict]:
    """Every process of one run, from Pants' workunit log: description and source (Ran, ...)."""
    (log,) = logdir.glob("*.json")
    return [
        {"description": json.loads(w["metadata"]["definition"])["description"], **w["metadata"]}
        for w in json.loads(log.read_text())
        if w["name"] == "process" and "definition" in w.get("metadata", {})
    ]


def ten_function_builds(workspace, runs: int, functions: int = FUNCTIONS, pantsd: bool = False):
    """`package` of all functions in one run, `--no-local-cache`, named caches warmed up once.

    With `pantsd`, a daemon is started with the same options (by `--version`, which builds no
    target) and stopped after the timed run: Pants' own start is left out and nothing is memoised
    from an earlier build, so every process still runs.
    """
    clone = workspace.clone()
    caches = workspace.empty_caches()
    groups = {
        "ours": [address(ours_name(n)) for n in range(functions)],
        "built-in": [address(builtin_name(n)) for n in range(functions)],
    }
    # Downloads are the same for every function: one of each kind fills the named caches.
    warm_up = [groups["ours"][0], groups["built-in"][0]]
    clone.pants(*caches, "package", *warm_up, timeout=3600)
    check_contents(clone.root, [a.rpartition(":")[2] for a in warm_up])
    timings: Dict[str, List[float]] = {label: [] for label in groups}
    goals: Dict[str, List[float]] = {label: [] for label in groups}
    processes: Dict[str, List[dict]] = {}
    options = (*caches, "--no-local-cache", f"--backend-packages=+['{WORKUNIT_LOGGER}']")
    for run in range(runs):
        for label, addresses in groups.items():
            name = f"workunits-{functions}-{label}-{run}{'-pantsd' if pantsd else ''}"
            logdir = workspace.root / name
            logdir.mkdir()
            logger = ("--workunit-logger-enabled", f"--workunit-logger-logdir={logdir}")
            try:
                if pantsd:
                    clone.pants(*options, "--version", pantsd=True, timeout=3600)
                seconds, _ = _timed(clone, *options, *logger, "package", *addresses, pantsd=pantsd)
            finally:
                if pantsd:
                    clone.kill_pantsd()
            timings[label].append(seconds)
            (log,) = logdir.glob("*.json")
            goals[label].append(goal_seconds(log))
            processes[label] = logged_processes(logdir)
            check_contents(clone.root, [a.rpartition(":")[2] for a in addresses])
    return timings, goals, processes


def _process_note(label: str, processes: List[dict], functions: int) -> str:
    ran = [p for p in processes if p.get("source") == "Ran"]
    compress = [p for p in processes if p["description"].startswith("Compress ")]
    distributions = sorted(
        {
            p["description"].removeprefix("Compress ")
            for p in compress
            if "first-party" not in p["description"]
        }
    )
    first_party = [p for p in compress if "first-party" in p["description"]]
    kinds = Counter(
        re.sub(
            r"\b(fn|builtin)\d+\b",
            r"\1<N>",
            re.sub(r"^Compress (?!first-party).*", "Compress <distribution>", p["description"]),
        )
        for p in processes
    )
    by_kind = ", ".join(f"{count}× {kind}" for kind, count in sorted(kinds.items()))
    if label == "ours":
        return (
            f"{label}: {len(processes)} processes, {len(ran)} ran; "
            f'{len(compress)} "Compress" processes for {functions} functions: '
            f"{len(compress) - len(first_party)} for distributions "
            f"({len(distributions)} distinct: {', '.join(distributions)}) and "
            f"{len(first_party)} for first-party code (all processes: {by_kind})"
        )
    return f"{label}: {len(processes)} processes, {len(ran)} ran ({by_kind})"


# ---------------------------------------------------------------------------------------------
# Peak RSS of `lambda-zip merge`


def flat_install(cache_dir: Path) -> Path:
    """numpy + pandas for the runtime's CPython, pip-installed flat (no bytecode), once."""
    tree = cache_dir / "heavy-site-packages"
    marker = cache_dir / "heavy-site-packages.complete"
    pins = REQUIREMENTS.read_text().split()
    if marker.exists() and marker.read_text().split() == pins:
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix="heavy-", dir=cache_dir))
    env = {**os.environ, "PIP_CONSTRAINT": ""}  # the image's pip config may carry a constraint file
    subprocess.run(
        [
            str(runtime_python()),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--target",
            str(staging),
            *pins,
        ],
        check=True,
        env=env,
    )
    staging.rename(tree)
    marker.write_text("\n".join(pins) + "\n")
    return tree


def _measure(argv: Sequence[str], env: dict) -> Tuple[float, int]:
    """(wall seconds, peak RSS KiB) of one subprocess (common.measure)."""
    measured = measure(argv, env=env)
    return measured.seconds, measured.peak_kib


def _units_by_record(tree: Path, bundled: Sequence[str]) -> List[List[str]]:
    """The tree's files by distribution, as the wheel step makes units: each `*.dist-info/RECORD`
    claims the bundled files it lists (the first claim wins), and what none lists is one unit."""
    claimed: set = set()
    found = []
    for record in sorted(p for p in bundled if p.endswith(".dist-info/RECORD")):
        rows = (tree / record).read_text(encoding="utf-8").splitlines()
        listed = {row.split(",")[0] for row in rows if row}
        paths = sorted(p for p in bundled if (p in listed or p == record) and p not in claimed)
        claimed.update(paths)
        found.append(paths)
    rest = [p for p in bundled if p not in claimed]
    return [paths for paths in (*found, rest) if paths]


def _merge_peaks(tree: Path, runs: int, workdir: Path) -> dict:
    """Build one part per distribution unit of `tree` (as lambda_rules/units.py splits it), merge
    them and build the whole tree in one go: seconds and peak RSS of each."""
    from lambda_rules import units
    from lambda_rules.zipper.summary import file_sha256  # in chunks: the harness stays small

    paths = sorted(
        str(p.relative_to(tree))
        for p in tree.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    bundled = [p for p in paths if units.is_bundled_distribution_path(p)]
    plans = _units_by_record(tree, bundled)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONDONTWRITEBYTECODE="1")
    env.pop("SOURCE_DATE_EPOCH", None)
    zipper = [sys.executable, "-m", "lambda_rules.zipper"]
    parts, build_peaks = [], []
    for i, plan in enumerate(plans):
        unit_dir = workdir / f"unit-{i}"
        for path in plan:
            (unit_dir / path).parent.mkdir(parents=True, exist_ok=True)
            os.link(tree / path, unit_dir / path)
        part = workdir / f"part-{i}.zip"
        build_peaks.append(_measure([*zipper, "build", str(unit_dir), "-o", str(part)], env)[1])
        parts.append(part)
    whole_dir = workdir / "whole"
    for path in bundled:
        (whole_dir / path).parent.mkdir(parents=True, exist_ok=True)
        os.link(tree / path, whole_dir / path)
    merged, one_shot = workdir / "merged.zip", workdir / "one-shot.zip"
    merge_runs, build_runs = [], []
    for _ in range(runs):
        merge_runs.append(_measure([*zipper, "merge", *map(str, parts), "-o", str(merged)], env))
        build_runs.append(_measure([*zipper, "build", str(whole_dir), "-o", str(one_shot)], env))
    return {
        "merge": merge_runs,
        "build": build_runs,
        "largest_part_peak": max(build_peaks),
        "parts": len(parts),
        "part_bytes": sum(p.stat().st_size for p in parts),
        "files": len(bundled),
        "unzipped": sum((tree / p).stat().st_size for p in bundled),
        "merged_bytes": merged.stat().st_size,
        "identical": file_sha256(merged) == file_sha256(one_shot),
        "baseline": _measure([sys.executable, "-c", "import lambda_rules.zipper.__main__"], env)[1],
    }


def merge_memory(cache_dir: Path, runs: int) -> str:
    """Peak RSS of `lambda-zip merge`: the numpy + pandas function, and a tree near Lambda's
    250 MB limit (the zipper benchmark's numpy, pandas, pyarrow and boto3)."""
    from bench_zipper import DEFAULT_PACKAGES, ensure_tree

    inputs = {
        "numpy + pandas function": flat_install(cache_dir),
        f"{', '.join(DEFAULT_PACKAGES)} (the zipper section's input)": ensure_tree(
            cache_dir, DEFAULT_PACKAGES
        ),
    }
    measured = {}
    for label, tree in inputs.items():
        with tempfile.TemporaryDirectory(dir=cache_dir) as workdir:
            measured[label] = _merge_peaks(tree, runs, Path(workdir))

    def mib(kib: float) -> str:
        return f"{kib / 1024:.0f}"

    def seconds(runs_: list) -> str:
        return f"{statistics.median(s for s, _ in runs_):.2f}"

    rows = []
    for label, m in measured.items():
        rows += [
            (
                f"{label}: `lambda-zip merge` of the parts",
                seconds(m["merge"]),
                mib(max(k for _, k in m["merge"])),
            ),
            (
                f"{label}: `lambda-zip build` of the same tree in one go",
                seconds(m["build"]),
                mib(max(k for _, k in m["build"])),
            ),
            (
                f"{label}: `lambda-zip build` of one part (largest of {m['parts']})",
                "",
                mib(m["largest_part_peak"]),
            ),
        ]
    notes = [
        f"- {label}: {m['parts']} parts, {m['files']:,} files, "
        f"{m['unzipped'] / 1e6:.1f} MB unzipped; parts {m['part_bytes'] / 1e6:.1f} MB, "
        f"merged archive {m['merged_bytes'] / 1e6:.1f} MB; merged archive "
        f"byte-identical to the one-shot build: {'yes' if m['identical'] else 'NO'}."
        for label, m in measured.items()
    ]
    notes += [
        f"- Inputs: {', '.join(REQUIREMENTS.read_text().split())} with their dependencies, "
        f"pip-installed for CPython {runtime_python().parent.parent.name} ({RUNTIME}); "
        "the zipper section's tree, pip-installed for the harness's CPython; both without "
        "bytecode, split by RECORD as `lambda_rules/units.py` splits.",
        f"- Peak RSS: `os.wait4` rusage of the `python -m lambda_rules.zipper` process, forked "
        f"from a fresh `python -I -S` (so the harness's own size does not count) (CPython "
        f"{platform.python_version()}, the harness's), maximum of {runs} run(s); "
        "wall seconds: median.",
        f"- For scale: that interpreter importing the `lambda-zip` command and exiting peaks at "
        f"{mib(next(iter(measured.values()))['baseline'])} MiB.",
    ]
    return "\n".join(
        [
            "### Peak memory of `lambda-zip merge`",
            "",
            markdown_table(("process", "wall s", "peak RSS MiB"), rows),
            "",
            *notes,
        ]
    )


# ---------------------------------------------------------------------------------------------


def _start_seconds(whole: Dict[str, List[float]], goal: Dict[str, List[float]]) -> str:
    """Pants' start (its rule graph included) and exit per kind: the median whole run less the
    median goal."""
    return " and ".join(
        f"{statistics.median(whole[kind]) - statistics.median(goal[kind]):.1f} s for {kind}"
        for kind in ("ours", "built-in")
    )


def _row(scenario: str, timings: Dict[str, List[float]]) -> Tuple[str, ...]:
    return timing_row(scenario, timings["ours"], timings["built-in"])


def section(workspace, runs: int, ten_runs: int, cache_dir: Path) -> str:
    """The heavy-function tables: pantsd edit, ten functions without process cache, merge memory."""
    noop, edited = edit_builds(workspace, runs)
    one, one_goal, _ = ten_function_builds(workspace, runs, functions=1)
    ten, ten_goal, processes = ten_function_builds(workspace, ten_runs)
    ten_pantsd, _, _ = ten_function_builds(workspace, ten_runs, pantsd=True)
    rows = [
        _row("one function: warm no-op, pantsd", noop),
        _row("one function: one source file edited, pantsd", edited),
        _row("one function: `--no-local-cache`, named caches warm, no pantsd", one),
        _row("one function: the same runs, `package` goal", one_goal),
        _row(f"{FUNCTIONS} functions: `--no-local-cache`, named caches warm, no pantsd", ten),
        _row(f"{FUNCTIONS} functions: the same runs, `package` goal", ten_goal),
        _row(
            f"{FUNCTIONS} functions: `--no-local-cache`, named caches warm, pantsd started first",
            ten_pantsd,
        ),
    ]
    pins = ", ".join(REQUIREMENTS.read_text().split())
    text = [
        f"## Heavy functions ({pins}, {RUNTIME}): `./pants package`, wall seconds",
        "",
        f"`//{HEAVY_DIR}:fn<N>` (`lambda_function`) against `//{HEAVY_DIR}:builtin<N>` "
        f"(`python_awslambda`), same handler files `fn_<N>.py` in a bench-only resolve "
        f"(`{LOCKFILE}`). Median of {runs} runs (one-function rows) and {ten_runs} runs "
        f"({FUNCTIONS}-function rows).",
        "",
        markdown_table(TIMING_HEADER, rows),
        "",
        "- no-op and edit rows: one clone, one pantsd, warmed up by one untimed build of both "
        f"targets; each edit appends a comment line to `{HEAVY_DIR}/fn_0.py`. The `package` goal "
        "rows: the goal's workunit in the workunit logger's JSON of the same runs (the whole run "
        "less Pants' own start).",
        f"- `--no-local-cache` rows: `./pants --no-local-cache package` of the one or "
        f"{FUNCTIONS} targets of one kind in one run, in one clone whose named caches (the "
        "built-in's pex caches of downloads and installed wheels; our wheels and the units laid "
        "out from them, `unit_cache`) and local store were warmed by one untimed build of `fn0` "
        "and `builtin0`; "
        "no process result is read from or written to the cache, so every process runs unless "
        "Pants memoises an identical one within the run. "
        "Both kinds run with the workunit logger on. The pantsd row runs the same build after a "
        "daemon was started with the same options by `./pants --version` (so Pants' own start "
        f"and exit, {_start_seconds(one, one_goal)} on this machine (the whole run less the "
        "goal, one-function rows), are not in it; nothing is "
        "memoised from an earlier build, and the daemon is stopped after each run). "
        "From the log (last no-pantsd run): "
        + "; ".join(
            _process_note(label, processes[label], FUNCTIONS) for label in ("ours", "built-in")
        )
        + ".",
        "",
        merge_memory(cache_dir, max(runs, 1)),
    ]
    return "\n".join(text)


def bytecode_pairs(workspace) -> list:
    """The README example and the numpy + pandas function, each without and with bytecode, from
    one `./pants package` in a clone with the user's caches."""
    from bench_bytecode import Pair

    clone = workspace.clone()
    clone.pants(
        "package",
        "//fn:lambda",
        "//fn:lambda_pyc",
        address(ours_name(0)),
        address(ours_name(0, True)),
        timeout=3600,
    )
    return [
        Pair(
            "README example (`//fn:lambda`)",
            clone.root / "dist/fn/lambda.zip",
            clone.root / "dist/fn/lambda_pyc.zip",
            "app",
        ),
        Pair(
            f"numpy + pandas (`{address(ours_name(0))}`)",
            artifact(clone.root, ours_name(0)),
            artifact(clone.root, ours_name(0, True)),
            handler_module(0),
        ),
    ]


def generate_lockfile() -> int:
    sys.path.insert(0, str(REPO_ROOT))
    from tests.conftest import make_clone

    with tempfile.TemporaryDirectory(prefix="heavy-lock-") as workdir:
        clone = make_clone(Path(workdir) / "clone")
        prepare(clone.root)
        result = clone.pants("generate-lockfiles", "--resolve=heavy", timeout=3600)
        print(result.stderr[-2000:], file=sys.stderr)
        shutil.copy(clone.root / LOCKFILE, REPO_ROOT / LOCKFILE)
    print(f"wrote {LOCKFILE}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    if sys.argv[1:] == ["--generate-lockfile"]:
        sys.exit(generate_lockfile())
    sys.exit(__doc__)
