"""What the benchmark modules share: the repository, the artifacts they compare, tables,
versions."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Sequence, Tuple

from tests.conftest import pyenv_python  # REPO_ROOT is on sys.path (bench/run, pytest)

REPO_ROOT = Path(__file__).resolve().parents[1]
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
