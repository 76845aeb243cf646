"""`lambda-zip verify` on the numpy + pandas function against packaging it cold (issue
"lambda-zip verify"): verify packages the archive again from the lockfile's wheels and its
sources, trusting no cache of parts, so a CI step that runs it costs about one packaging. The
target: verify with a warm wheel cache (the `--cache-dir` packaging filled) takes at most twice
as long as packaging cold (empty caches).

Each run: fresh caches; `lambda-zip package` cold, measured; then `lambda-zip verify` of its
archive with the same `--cache-dir`, measured (it takes only wheels from it, and makes every part
again); both from the venv bench_package makes.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Dict, List, Tuple

from bench_package import Caches, Function, Tools, check_archive, command, functions
from common import REPO_ROOT, Measured, markdown_table, measure, spread

TARGET_RATIO = 2.0


def _numpy_pandas() -> Function:
    (function,) = [f for f in functions() if f.label.startswith("numpy")]
    return function


def verify_once(tools: Tools, workdir: Path) -> Tuple[Measured, Measured]:
    """Package cold in fresh caches, then verify with the wheel cache it filled."""
    function = _numpy_pandas()
    caches = Caches(workdir / "caches")
    src = function.write_source(workdir / "src", second=False)
    out = workdir / "out" / "function.zip"
    out.parent.mkdir(parents=True)
    argv, extra = command("lambda-zip", tools, function, src, out, caches)
    package = measure(argv, env={**caches.env(tools), **extra}, cwd=workdir)
    check_archive(out, function)
    verify = measure(
        [
            tools.bin / "lambda-zip", "verify", out, "--lockfile", function.lockfile,
            src / function.handler_file, "--source-root", src,
            "--cache-dir", caches.root / "parts",
        ],
        env=caches.env(tools),
        cwd=workdir,
    )  # fmt: skip
    return package, verify


def section(tools: Tools, workdir: Path, runs: int) -> str:
    """The verify table: cold package, warm verify, their ratio against the target."""
    measured: Dict[str, List[Measured]] = {"package": [], "verify": []}
    for run in range(runs):
        package, verify = verify_once(tools, workdir / f"verify-{run}")
        measured["package"].append(package)
        measured["verify"].append(verify)
    seconds = {k: statistics.median(m.seconds for m in v) for k, v in measured.items()}
    peaks = {k: max(m.peak_kib for m in v) / 1024 for k, v in measured.items()}
    time_ratio = seconds["verify"] / seconds["package"]
    rows = [
        (
            "`lambda-zip package`, cold: empty caches",
            f"{seconds['package']:.2f}",
            spread([m.seconds for m in measured["package"]]),
            f"{peaks['package']:.0f}",
        ),
        (
            "`lambda-zip verify`, wheel cache warm (packaging's `--cache-dir`)",
            f"{seconds['verify']:.2f}",
            spread([m.seconds for m in measured["verify"]]),
            f"{peaks['verify']:.0f}",
        ),
        (
            "verify / cold package",
            f"{time_ratio:.2f}",
            "",
            f"{peaks['verify'] / peaks['package']:.2f}",
        ),
    ]
    met = "met" if time_ratio <= TARGET_RATIO else "NOT met"
    function = _numpy_pandas()
    return "\n".join(
        [
            "## `lambda-zip verify` of the numpy + pandas function: wall seconds and peak memory",
            "",
            f"Median of {runs} run{'s' if runs > 1 else ''}; each run packages "
            f"`{function.handler_file}` (`{function.requirements.relative_to(REPO_ROOT)}`) cold, "
            "then verifies that archive against the same lockfile and source.",
            "",
            markdown_table(("step", "median s", "min–max s", "peak RSS MiB"), rows),
            "",
            f"- Target verify ≤ {TARGET_RATIO:.0f}× cold packaging: {met} ({time_ratio:.2f}×).",
            "- Verify takes exactly the manifest's pins from the lockfile (not their dependencies; "
            "wheels from the warm wheel cache, each checked against its sha256), compresses "
            "every part again in an empty cache of parts, merges, and compares every entry, the "
            "manifest and the SBOM; cold packaging downloads every wheel first.",
            "- Peak RSS: the largest process of the command's tree, as in the `lambda-zip "
            "package` section.",
        ]
    )
