"""`lambda-zip package` against the scripts teams run before `terraform apply` (issue "lambda-zip
package"), in the same run, on the same functions:

- pip: `pip install --platform manylinux2014_x86_64 --only-binary=:all: --python-version 3.12
  --implementation cp --target DIR -r requirements.txt`, the handler copied in, `zip -X -D -r`;
- uv's documented recipe: `uv pip install --python-platform x86_64-manylinux2014 --python-version
  3.12 --target DIR -r requirements.txt`, the handler copied in, `zip -r`.

Two functions: the README example (fn/app.py on orjson + pydantic, 3rdparty/python/default.lock)
and numpy + pandas (bench/heavy). Cold: empty pip and uv caches, an empty `--cache-dir` (which
holds lambda-zip's wheels and parts) and an empty HOME. Warm: a second function on the same
requirements right after, caches kept. Wall time and peak RSS of each command's whole process
tree (its largest process).

All three run from one venv of the runtime's CPython, made per bench run: lambda-rules built from
a copy of this working tree with its `package` extra, and the pinned pip and uv. Nothing of the
host's pip configuration reaches them (`PIP_CONFIG_FILE=/dev/null`, `UV_NO_CONFIG=1`, no `PIP_*`
variables); the host's CA bundle does (`--cert`, `SSL_CERT_FILE`).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from common import REPO_ROOT, RUNTIME, Measured, markdown_table, measure, runtime_python, spread

PIP_VERSION = "26.3"
UV_VERSION = "0.13.9"
PYTHON_VERSION = RUNTIME.removeprefix("python")
TOOLS = ("lambda-zip", "pip + zip", "uv + zip")


def ca_bundle() -> str | None:
    """The CA bundle the host's pip uses: nothing downloads without it behind this machine's
    TLS-inspecting proxy."""
    for variable in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        path = os.environ.get(variable)
        if path and os.path.isfile(path):
            return path
    default = "/etc/ssl/certs/ca-certificates.crt"
    return default if os.path.isfile(default) else None


def _cert_args() -> List[str]:
    bundle = ca_bundle()
    return ["--cert", bundle] if bundle else []


@dataclass(frozen=True)
class Tools:
    """The venv the three commands run from, and their versions."""

    venv: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def version(self, command: str, *args: str) -> str:
        return subprocess.run(
            [str(self.bin / command), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    def describe(self) -> str:
        python = self.version("python", "--version")
        installer = self.version("python", "-c", "import installer; print(installer.__version__)")
        pip = self.version("pip", "--version").split(" from ")[0]
        return (
            f"{python} venv: lambda-rules from this working tree (installer {installer}), {pip}, "
            f"{self.version('uv', '--version')}"
        )


def install_tools(workdir: Path) -> Tools:
    """A venv of the runtime's CPython with lambda-rules[package] and the pinned pip and uv.

    The wheel is built from a copy of pyproject.toml and lambda_rules/ (as tests/conftest.py's
    plugin_wheel does): setuptools' leftover build/ would litter the checkout, and engineers edit
    the tree meanwhile.
    """
    source = workdir / "lambda-rules-source"
    source.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "pyproject.toml", source)
    shutil.copytree(
        REPO_ROOT / "lambda_rules",
        source / "lambda_rules",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    wheels = workdir / "wheels"
    pip = ["-m", "pip", "--isolated", "--disable-pip-version-check", *_cert_args()]
    subprocess.run(
        [str(runtime_python()), *pip, "wheel", "--quiet", "--no-deps", "-w", str(wheels), source],
        check=True,
    )
    (wheel,) = wheels.glob("lambda_rules-*.whl")
    venv = workdir / "tools-venv"
    subprocess.run([str(runtime_python()), "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin/python")
    subprocess.run([python, *pip, "install", "--quiet", f"pip=={PIP_VERSION}"], check=True)
    subprocess.run(
        [python, *pip, "install", "--quiet", f"{wheel}[package]", f"uv=={UV_VERSION}"],
        check=True,
    )
    return Tools(venv)


@dataclass(frozen=True)
class Function:
    """A function to package: its handler file, requirements and lockfile, and what its archive
    must hold."""

    label: str
    handler_file: str  # the file name, also the module
    handler_source: str
    requirements: Path
    lockfile: Path
    expected: Tuple[str, ...]  # package paths every archive must hold

    def write_source(self, directory: Path, second: bool) -> Path:
        """The handler's source folder; the second function's file differs by a comment."""
        directory.mkdir(parents=True)
        text = self.handler_source + ("# the second function\n" if second else "")
        (directory / self.handler_file).write_text(text)
        return directory


def functions() -> List[Function]:
    from bench_heavy import HANDLER, LOCKFILE, REQUIREMENTS

    return [
        Function(
            "README example (orjson, pydantic)",
            "app.py",
            (REPO_ROOT / "fn/app.py").read_text(),
            REPO_ROOT / "3rdparty/python/requirements.txt",
            REPO_ROOT / "3rdparty/python/default.lock",
            ("app.py", "pydantic/__init__.py", "pydantic_core/__init__.py", "orjson/__init__.py"),
        ),
        Function(
            "numpy + pandas",
            "fn_0.py",
            HANDLER.format(n=0),
            REQUIREMENTS,
            REPO_ROOT / LOCKFILE,
            ("fn_0.py", "numpy/__init__.py", "pandas/__init__.py"),
        ),
    ]


class Caches:
    """One tool's caches and HOME, empty when made: kept from a cold run to the warm one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for name in ("home", "pip", "uv", "parts"):
            (root / name).mkdir(parents=True)

    def env(self, tools: Tools) -> Dict[str, str]:
        """An environment of our own: no `PIP_*` of the host's, no pip or uv config file."""
        env = {
            "PATH": f"{tools.bin}:/usr/bin:/bin",
            "HOME": str(self.root / "home"),
            "LANG": "C.UTF-8",
            "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
            "PIP_CACHE_DIR": str(self.root / "pip"),
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "UV_CACHE_DIR": str(self.root / "uv"),
            "UV_NO_CONFIG": "1",
            "UV_PYTHON_DOWNLOADS": "never",
        }
        bundle = ca_bundle()
        if bundle:
            env["SSL_CERT_FILE"] = bundle
        return env


def command(
    tool: str, tools: Tools, function: Function, src: Path, out: Path, caches: Caches
) -> Tuple[List[object], Dict[str, str]]:
    """argv of one tool's whole recipe (resolve and install, add the handler, zip), and the
    variables it needs beside `Caches.env`."""
    if tool == "lambda-zip":
        return [
            tools.bin / "lambda-zip", "package", src / function.handler_file,
            "--source-root", src, "--handler", f"{Path(function.handler_file).stem}.handler",
            "--runtime", RUNTIME, "-r", function.requirements, "--lockfile", function.lockfile,
            "-o", out, "--cache-dir", caches.root / "parts",
        ], {}  # fmt: skip
    target = out.parent / "target"
    if tool == "pip + zip":
        install = [
            tools.bin / "pip", "install", "--quiet", *_cert_args(),
            "--platform", "manylinux2014_x86_64", "--only-binary=:all:",
            "--python-version", PYTHON_VERSION, "--implementation", "cp",
            "--target", target, "-r", function.requirements,
        ]  # fmt: skip
        zip_options = "-X -D -r -q"
    else:
        install = [
            tools.bin / "uv", "pip", "install", "--quiet",
            "--python-platform", "x86_64-manylinux2014", "--python-version", PYTHON_VERSION,
            "--target", target, "-r", function.requirements,
        ]  # fmt: skip
        zip_options = "-r -q"
    script = f'set -e; "$@"; cp "$SRC" "$TARGET/"; cd "$TARGET"; zip {zip_options} "$OUT" .'
    return ["/bin/sh", "-c", script, "sh", *install], {
        "SRC": str(src / function.handler_file),
        "TARGET": str(target),
        "OUT": str(out),
    }


def run_recipe(
    tool: str, tools: Tools, function: Function, workdir: Path, caches: Caches, second: bool
) -> Tuple[Measured, Path]:
    """Package `function` (the second one when `second`) with one tool, measured; the archive."""
    step = "warm" if second else "cold"
    src = function.write_source(workdir / f"src-{step}", second)
    out = workdir / f"out-{step}" / "function.zip"
    out.parent.mkdir(parents=True)
    argv, extra = command(tool, tools, function, src, out, caches)
    measured = measure(argv, env={**caches.env(tools), **extra}, cwd=workdir)
    check_archive(out, function)
    return measured, out


def check_archive(archive: Path, function: Function) -> None:
    with zipfile.ZipFile(archive) as opened:
        missing = set(function.expected) - set(opened.namelist())
    if missing:
        raise RuntimeError(f"{archive} lacks {', '.join(sorted(missing))}")


@dataclass
class Results:
    """(function label, step) -> tool -> measurements; the last cold archive of each."""

    runs: Dict[Tuple[str, str], Dict[str, List[Measured]]]
    archives: Dict[Tuple[str, str], Path]


def benchmark(tools: Tools, workdir: Path, runs: int, chosen: Sequence[Function]) -> Results:
    """Each run: per function, per tool, fresh caches; cold, then warm. Tools alternate."""
    results = Results({}, {})
    for run in range(runs):
        for f_index, function in enumerate(chosen):
            for t_index, tool in enumerate(TOOLS):
                base = workdir / f"run-{run}" / f"function-{f_index}" / f"tool-{t_index}"
                caches = Caches(base / "caches")
                for step, second in (("cold", False), ("warm", True)):
                    measured, archive = run_recipe(tool, tools, function, base, caches, second)
                    results.runs.setdefault((function.label, step), {t: [] for t in TOOLS})
                    results.runs[(function.label, step)][tool].append(measured)
                    if step == "cold":
                        results.archives[(function.label, tool)] = archive
    return results


def _ratio(ours: float, others: Sequence[float]) -> str:
    return f"{ours / min(others):.2f}"


def time_rows(results: Results) -> List[Tuple[str, ...]]:
    rows = []
    for (label, step), by_tool in results.runs.items():
        medians = [statistics.median(m.seconds for m in by_tool[t]) for t in TOOLS]
        rows.append(
            (
                f"{label}: {step}",
                *(f"{m:.2f}" for m in medians),
                _ratio(medians[0], medians[1:]),
                *(spread([m.seconds for m in by_tool[t]]) for t in TOOLS),
            )
        )
    return rows


def memory_rows(results: Results) -> List[Tuple[str, ...]]:
    rows = []
    for (label, step), by_tool in results.runs.items():
        peaks = [max(m.peak_kib for m in by_tool[t]) / 1024 for t in TOOLS]
        rows.append((f"{label}: {step}", *(f"{p:.0f}" for p in peaks), _ratio(peaks[0], peaks[1:])))
    return rows


def archive_notes(results: Results, chosen: Sequence[Function]) -> List[str]:
    notes = []
    for function in chosen:
        sizes = []
        for tool in TOOLS:
            with zipfile.ZipFile(results.archives[(function.label, tool)]) as archive:
                entries = archive.infolist()
            pyc = sum(e.filename.endswith(".pyc") for e in entries)
            sizes.append(
                f"{tool} {results.archives[(function.label, tool)].stat().st_size / 1e6:.1f} MB, "
                f"{len(entries):,} entries ({pyc:,} .pyc)"
            )
        notes.append(f"- Archives, {function.label}: {'; '.join(sizes)}.")
    return notes


def section(tools: Tools, workdir: Path, runs: int) -> str:
    """The `lambda-zip package` tables: time and peak memory against pip and uv."""
    chosen = functions()
    results = benchmark(tools, workdir, runs, chosen)
    time_header = (
        "function: step",
        *(f"{t} s" for t in TOOLS),
        "ours / fastest",
        *(f"{t} min–max" for t in TOOLS),
    )
    memory_header = ("function: step", *(f"{t} MiB" for t in TOOLS), "ours / lowest")
    return "\n".join(
        [
            "## `lambda-zip package` against pip and uv: wall seconds and peak memory",
            "",
            f"Median of {runs} run{'s' if runs > 1 else ''}; each run alternates the tools, "
            "and packages each function cold, then a second function on the same requirements "
            "warm. `ours / fastest`: lambda-zip's median over the faster of pip's and uv's.",
            "",
            markdown_table(time_header, time_rows(results)),
            "",
            "Peak RSS (MiB) of the largest process of each command's tree, maximum over the runs:",
            "",
            markdown_table(memory_header, memory_rows(results)),
            "",
            f"- Tools: {tools.describe()}; Info-ZIP `zip`. lambda-zip resolves from the lockfile "
            "(each wheel checked against its sha256) and writes the manifest and SBOM too; pip "
            "and uv resolve the requirements file against PyPI that day, and pip compiles `.pyc` "
            "with the venv's CPython (its default), which the archive then carries.",
            "- Cold: new PIP_CACHE_DIR, UV_CACHE_DIR, `--cache-dir` and HOME for each "
            "tool and function, so every wheel is downloaded. Warm: the second function right "
            "after, with the same caches: lambda-zip takes every part from `--cache-dir` "
            "(`compressed 0`), pip installs from its HTTP cache, uv links from its cache; pip "
            "and uv still zip the whole tree.",
            "- Peak RSS: `os.wait4` rusage of the command, forked from a fresh `python -I -S` "
            "(the harness's size does not count); it is the largest single process of the tree "
            "(lambda-zip, pip, uv or zip), not their sum.",
            *archive_notes(results, chosen),
        ]
    )
