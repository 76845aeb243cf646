"""Benchmark lambda-zip against Info-ZIP `zip -6` and stdlib `zipfile` on real installed packages.

Not a test. Builds (once, cached under .cache/bench/) a tree of installed
packages with `pip install --target` for this interpreter, then zips it with
each candidate in a subprocess, `--runs` times, and prints a markdown table:
input MB / median wall seconds, output bytes, and the peak RSS of the largest
single process of the candidate (os.wait4 rusage, which folds in reaped
grandchildren such as our compression workers).

`pex3 venv create --layout flat-zipped` is left out: it zips what it resolves
and installs itself (from requirements, a lock or a PEX), not a staged
directory, so its time would mostly measure resolving and installing.

Usage: python bench/bench_zipper.py [--runs 3] [--tree DIR] [--packages ...]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PACKAGES = ("numpy", "pandas", "pyarrow", "boto3")
MIN_TREE_BYTES = 150 * 1000 * 1000
EXCLUDED_DIRS = ("__pycache__",)
EXCLUDED_SUFFIXES = (".pyc", ".pyo")

ZIPFILE_SCRIPT = """
import os, sys, zipfile
root, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith((".pyc", ".pyo")):
                path = os.path.join(directory, name)
                archive.write(path, os.path.relpath(path, root))
"""


# The ceiling for the zipper on N cores: the same files read and compressed by libdeflate at the
# zipper's default level in N processes (each a contiguous share of the files by bytes), with no
# archive, CRC, ordering or transfer of the payloads: only the compressed total is written.
CEILING_SCRIPT = """
import os, sys
from multiprocessing import Pool
import deflate
root, out, processes = sys.argv[1], sys.argv[2], int(sys.argv[3])

def files():
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if not name.endswith((".pyc", ".pyo")):
                yield os.path.join(directory, name)

def compress(paths):
    total = 0
    for path in paths:
        with open(path, "rb") as f:
            total += len(deflate.deflate_compress(f.read(), 6))
    return total

if __name__ == "__main__":
    paths = list(files())
    sizes = [os.path.getsize(p) for p in paths]
    shares, share, taken = [], [], 0
    for path, size in zip(paths, sizes):
        share.append(path)
        taken += size
        if taken >= sum(sizes) * (len(shares) + 1) / processes and len(shares) < processes - 1:
            shares.append(share)
            share = []
    shares.append(share)
    with Pool(processes) as pool:
        total = sum(pool.map(compress, shares))
    with open(out, "w") as f:
        f.write(str(total))
"""


@dataclass(frozen=True)
class Candidate:
    name: str
    command: Callable[[Path, Path], List[str]]
    """(tree, out) -> argv; run with cwd=tree."""
    # The command writes the compressed byte count to `out` instead of an archive.
    writes_count: bool = False


@dataclass(frozen=True)
class BenchRow:
    candidate: str
    median_seconds: float
    mb_per_second: float
    output_bytes: int
    peak_rss_mib: float
    sha256: str


def _lambda_zip(*options: str) -> Callable[[Path, Path], List[str]]:
    return lambda tree, out: [
        sys.executable,
        "-m",
        "lambda_rules.zipper",
        "build",
        str(tree),
        "-o",
        str(out),
        *options,
    ]


def candidates(cpus: int) -> List[Candidate]:
    return [
        Candidate("lambda-zip, 1 worker", _lambda_zip("--workers", "1")),
        Candidate(f"lambda-zip, {cpus} workers", _lambda_zip("--workers", str(cpus))),
        Candidate("lambda-zip --store", _lambda_zip("--store", "--workers", "1")),
        Candidate(
            f"libdeflate ceiling, {cpus} processes (compression only, no archive)",
            lambda tree, out: [
                sys.executable,
                "-c",
                CEILING_SCRIPT,
                str(tree),
                str(out),
                str(cpus),
            ],
            writes_count=True,
        ),
        Candidate(
            "zip -r -X -D -6",
            lambda tree, out: [
                "zip",
                "-q",
                "-r",
                "-X",
                "-D",
                "-6",
                str(out),
                ".",
                "-x",
                "*__pycache__/*",
                "*.pyc",
                "*.pyo",
            ],
        ),
        Candidate(
            "zipfile level 6",
            lambda tree, out: [sys.executable, "-c", ZIPFILE_SCRIPT, str(tree), str(out)],
        ),
    ]


def input_bytes(tree: Path) -> int:
    """Bytes of the files every candidate zips (bytecode left out, symlinks followed)."""
    total = 0
    for directory, dirs, files in os.walk(tree):
        dirs[:] = [d for d in dirs if d not in EXCLUDED_DIRS]
        total += sum(
            os.path.getsize(os.path.join(directory, f))
            for f in files
            if not f.endswith(EXCLUDED_SUFFIXES)
        )
    return total


def ensure_tree(cache_dir: Path, packages: Sequence[str]) -> Path:
    """pip install --target the packages for this interpreter, once; reuse the cached tree after."""
    tree = cache_dir / f"site-packages-{sys.implementation.cache_tag}"
    marker = cache_dir / f"{tree.name}.complete"
    if marker.exists() and marker.read_text().split() == sorted(packages):
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix="tree-", dir=cache_dir))
    print(f"installing {' '.join(packages)} into {tree} (once) ...", file=sys.stderr)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            "--disable-pip-version-check",
            "--target",
            str(staging),
            *packages,
        ],
        check=True,
    )
    staging.rename(tree)
    marker.write_text(" ".join(sorted(packages)) + "\n")
    return tree


def _sha256_file(path: Path) -> str:
    """Hash in chunks: the bench process must stay small, because on Linux a child's peak RSS
    starts from its parent's (the pre-exec address space counts)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _measure_once(argv: List[str], cwd: Path, env: dict) -> tuple:
    """(wall seconds, peak RSS KiB) of one run."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so tell Popen
    if process.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed with status {process.returncode}")
    return elapsed, usage.ru_maxrss


def run_benchmark(
    tree: Path, runs: int, workdir: Path, cpus: Optional[int] = None
) -> List[BenchRow]:
    """Run every candidate `runs` times on `tree`; the rows that main() prints."""
    cpus = cpus or len(os.sched_getaffinity(0))
    megabytes = input_bytes(tree) / 1e6
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONDONTWRITEBYTECODE="1")
    env.pop("SOURCE_DATE_EPOCH", None)
    rows = []
    for candidate in candidates(cpus):
        out = workdir / "out.zip"
        timings, peaks = [], []
        for _ in range(runs):
            if out.exists():
                out.unlink()  # zip -r would otherwise update the previous archive
            elapsed, peak_kib = _measure_once(candidate.command(tree, out), tree, env)
            timings.append(elapsed)
            peaks.append(peak_kib)
        median = statistics.median(timings)
        rows.append(
            BenchRow(
                candidate=candidate.name,
                median_seconds=median,
                mb_per_second=megabytes / median,
                output_bytes=int(out.read_text()) if candidate.writes_count else out.stat().st_size,
                peak_rss_mib=max(peaks) / 1024,
                sha256="" if candidate.writes_count else _sha256_file(out),
            )
        )
    return rows


def machine_description() -> str:
    deflate_version = (
        subprocess.run(
            [sys.executable, "-c", "import deflate; print(deflate.__version__)"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        or "not installed"
    )
    zip_version = subprocess.run(["zip", "-v"], capture_output=True, text=True).stdout.splitlines()
    load = os.getloadavg()
    return (
        f"CPUs: {len(os.sched_getaffinity(0))} ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}, deflate {deflate_version}, "
        f"{zip_version[1].strip() if len(zip_version) > 1 else 'zip: unknown'}, "
        f"load average (1 min) before: {load[0]:.2f}"
    )


def format_table(rows: Sequence[BenchRow], megabytes: float) -> str:
    lines = [
        f"input: {megabytes:.1f} MB",
        "",
        "| candidate | MB/s | median wall s | output bytes | peak RSS MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.candidate} | {row.mb_per_second:.1f} | {row.median_seconds:.2f} | "
            f"{row.output_bytes:,} | {row.peak_rss_mib:.0f} |"
        )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per candidate (median reported)")
    parser.add_argument(
        "--tree", type=Path, help="zip this directory instead of the cached package tree"
    )
    parser.add_argument(
        "--packages", nargs="+", default=list(DEFAULT_PACKAGES), help="packages for the tree"
    )
    parser.add_argument("--cache-dir", type=Path, default=REPO_ROOT / ".cache" / "bench")
    args = parser.parse_args(argv)
    if shutil.which("zip") is None:
        parser.error("Info-ZIP zip is not installed (apt-get install -y zip)")
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    tree = args.tree or ensure_tree(args.cache_dir, args.packages)
    megabytes = input_bytes(tree) / 1e6
    if megabytes * 1e6 < MIN_TREE_BYTES:
        print(f"warning: input is only {megabytes:.0f} MB (< 150 MB)", file=sys.stderr)
    print(machine_description())
    with tempfile.TemporaryDirectory(dir=args.cache_dir) as workdir:
        rows = run_benchmark(tree.resolve(), args.runs, Path(workdir))
    print(format_table(rows, megabytes))
    ours = {row.sha256 for row in rows if row.candidate.startswith("lambda-zip,")}
    print(f"\nlambda-zip output identical for 1 and N workers: {'yes' if len(ours) == 1 else 'NO'}")
    print(f"load average (1 min) after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
