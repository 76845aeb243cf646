"""What the benchmark modules share: the repository, the artifacts they compare, tables,
versions."""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parents[1]
# bench/run and pytest put the repository on sys.path; a module run as a script
# (`python bench/bench_api.py --generate-lockfile`) has only bench/ there.
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))

from tests.conftest import pyenv_python  # noqa: E402

# The Lambda runtime of //fn:lambda; the built-in target is given the same one.
RUNTIME = "python3.12"


@dataclass(frozen=True)
class Artifact:
    """A deployment package: what to call it, its zip, and the module Lambda imports first."""

    label: str
    path: Path
    handler_module: str


def runtime_python() -> Path:
    """pyenv's CPython of the Lambda runtime's version."""
    return pyenv_python(int(RUNTIME.rpartition(".")[2]))


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """The first column left-aligned (names), the others right-aligned (numbers)."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
        *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows),
    ]
    return "\n".join(lines)


def _output(*argv: object) -> str:
    return subprocess.run(
        [str(a) for a in argv], check=True, capture_output=True, text=True
    ).stdout.strip()


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.machine()


def machine_description() -> List[str]:
    """Markdown list items: the hardware, the load, and the version of every tool measured."""
    import deflate  # in the harness's environment (bench/run sees to it)

    bootstrap = Path(_output(REPO_ROOT / "pants", "--print-bootstrap-dir"))
    bootstrap_python = bootstrap / "venv/bin/python"
    pants_version = _output(
        bootstrap_python,
        "-c",
        "import importlib.metadata as m; print(m.version('pantsbuild.pants'))",
    )
    pex_version = _output(bootstrap_python, next(bootstrap.glob("pex-*.pex")), "--version")
    zip_version = re.search(r"Zip (\S+)", _output("zip", "-v")).group(1)
    return [
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- CPU: {len(os.sched_getaffinity(0))} usable cores, {_cpu_model()} "
        f"({platform.machine()}); load average at start {os.getloadavg()[0]:.2f}",
        f"- OS: {platform.platform()}",
        f"- Harness Python: {platform.python_implementation()} {platform.python_version()}",
        f"- Pants {pants_version}; pex {pex_version} (the pex CLI Pants runs)",
        f"- Compressor: deflate {deflate.__version__} (libdeflate; lambda-zip); "
        f"Info-ZIP zip {zip_version}; zlib {zlib.ZLIB_RUNTIME_VERSION} (stdlib zipfile)",
        f"- Cold-start interpreter: pyenv's {_output(runtime_python(), '--version')} "
        f"(runtime {RUNTIME})",
    ]


def ratio(ours: float, builtin: float) -> str:
    return f"{ours / builtin:.2f}"


TIMING_HEADER = (
    "scenario",
    "ours s",
    "built-in s",
    "ours / built-in",
    "ours min–max",
    "built-in min–max",
)


def timing_row(scenario: str, ours: Sequence[float], builtin: Sequence[float]) -> Tuple[str, ...]:
    """Medians and their ratio, then each kind's fastest and slowest run: the noise to judge by."""
    medians = statistics.median(ours), statistics.median(builtin)
    spreads = (f"{min(runs):.2f}–{max(runs):.2f}" for runs in (ours, builtin))
    return scenario, f"{medians[0]:.2f}", f"{medians[1]:.2f}", ratio(*medians), *spreads


def settle() -> None:
    """Flush what earlier runs wrote before timing the next: a 50-function run writes gigabytes
    (Pants' store and dist/), and the kernel writing them back during the next timed run slowed
    whichever kind ran next (bench/RESULTS.md, "Where the time inside the goal goes")."""
    os.sync()


# Pants' backend that writes each run's workunits as JSON (goal and process timings).
WORKUNIT_LOGGER = "pants.backend.experimental.tools.workunit_logger"


def logger_options(logdir: Path) -> Tuple[str, ...]:
    """Options that make one `./pants` run write its workunits to `logdir` (which must exist)."""
    return (
        f"--backend-packages=+['{WORKUNIT_LOGGER}']",
        "--workunit-logger-enabled",
        f"--workunit-logger-logdir={logdir}",
    )


def goal_seconds(log: Path, goal: str = "package") -> float:
    """Seconds inside one goal of a Pants run, from the workunit logger's JSON: the goal rule's
    workunit (described as "`package` goal")."""
    workunit = _goal_workunit(log, goal)
    return workunit["duration_secs"] + workunit["duration_nanos"] / 1e9


def goal_started_at(log: Path, goal: str = "package") -> float:
    """When one goal of a Pants run began, in seconds since the epoch (the workunit logger's
    clock is the wall clock): what came before it is Pants' start."""
    workunit = _goal_workunit(log, goal)
    return workunit["start_secs"] + workunit["start_nanos"] / 1e9


def _goal_workunit(log: Path, goal: str) -> dict:
    description = f"`{goal}` goal"
    (workunit,) = [w for w in json.loads(log.read_text()) if w.get("description") == description]
    return workunit


# Forks the measured command from a fresh, small interpreter: on Linux a child's peak RSS counts
# the address space it was forked from (exec keeps the old mm's high-water mark), so spawning it
# from the harness, which has grown by then, would report the harness's size instead. wait4's
# rusage covers the whole tree the command waited for: its peak is the largest process's.
_MEASURE_SCRIPT = """
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


@dataclass(frozen=True)
class Measured:
    """Wall seconds and peak RSS (KiB, of the largest process of the tree) of one command."""

    seconds: float
    peak_kib: int


def measure(argv: Sequence[object], *, env: dict, cwd: Path | None = None) -> Measured:
    """Run `argv` (its stdout discarded) and measure it; a failure raises with its stderr."""
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _MEASURE_SCRIPT, *map(str, argv)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    out = result.stdout.split()
    if result.returncode != 0 or len(out) != 3 or out[2] != "0":
        raise RuntimeError(
            f"{' '.join(map(str, argv))[:300]} failed ({out[2:] or result.returncode}):\n"
            f"{result.stderr[-3000:]}"
        )
    return Measured(float(out[0]), int(out[1]))


def spread(values: Sequence[float], digits: int = 2) -> str:
    """min–max of runs: the noise to judge a median by."""
    return f"{min(values):.{digits}f}–{max(values):.{digits}f}"


def add_bench_resolve(root: Path, name: str, lockfile: str, constraints: str) -> Path:
    """Give the clone at `root` a bench-only resolve `name` (its lockfile, its interpreter
    constraints) and a source root `/<name>`; the new, empty directory for its targets."""
    config = root / "pants.toml"
    text = config.read_text()
    for old, new in (
        ("root_patterns = [", f'root_patterns = ["/{name}", '),
        ("[python.resolves]\n", f'[python.resolves]\n{name} = "{lockfile}"\n'),
        (
            "[python.resolves_to_interpreter_constraints]\n",
            f"[python.resolves_to_interpreter_constraints]\n{name} = {constraints}\n",
        ),
    ):
        if text.count(old) != 1:
            raise RuntimeError(f"pants.toml: expected exactly one `{old.strip()}` to extend")
        text = text.replace(old, new)
    config.write_text(text)
    directory = root / name
    directory.mkdir()
    return directory
