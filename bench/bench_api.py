"""API functions: FastAPI behind Mangum with powertools, boto3, httpx, requests, orjson, PyJWT and
structlog (29 distributions, none large), on python3.12; our `lambda_function` against the built-in
`python_awslambda` (issue "Many small distributions").

Where numpy + pandas (bench_heavy) has a few large distributions, an API function has many small
ones: a process per distribution, and a merge of many parts, are what could cost here.

- One function, `--no-local-cache` (every process runs), named caches warm (no downloads, and
  each wheel already laid out, as pex's installed wheels are for the built-in).
- Five functions on the same requirements, the same way.
- One function, one source line edited, with pantsd.
- The scale curve: N = 1, 10, 50 functions on the same requirements, `--no-local-cache`, with a
  pantsd started first and without; the seconds each added function costs, per kind.

Every run is logged by Pants' workunit logger: each row gives the wall time of the whole
`./pants` run and the time inside the `package` goal (the goal's workunit), and the notes count
the processes by description. The requirements live in a bench-only resolve, `api`
(bench/api/requirements.txt, lockfile bench/api/api.lock), added to the bench's clones only.

    python bench/bench_api.py --generate-lockfile    # rewrite bench/api/api.lock (network)
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from bench_heavy import logged_processes
from common import (
    REPO_ROOT,
    RUNTIME,
    TIMING_HEADER,
    WORKUNIT_LOGGER,
    add_bench_resolve,
    goal_seconds,
    markdown_table,
    ratio,
    settle,
    timing_row,
)

API_DIR = "api"  # in the clones, a source root of its own
REQUIREMENTS = REPO_ROOT / "bench/api/requirements.txt"
LOCKFILE = "bench/api/api.lock"
RESOLVE_CONSTRAINTS = '["CPython==3.12.*"]'
MANY = 5
SCALE = (1, 10, 50)
KINDS = ("ours", "built-in")
# What every artifact must hold: each requirement's top-level package and some of what they pull.
EXPECTED_PACKAGES = (
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic_core",
    "mangum",
    "aws_lambda_powertools",
    "boto3",
    "botocore",
    "httpx",
    "requests",
    "jwt",
    "structlog",
)

HANDLER = '''"""An API function for the benchmarks (number {n}): FastAPI behind Mangum."""

import boto3
import httpx
import jwt
import orjson
import requests
import structlog
from aws_lambda_powertools import Logger
from fastapi import FastAPI
from mangum import Mangum

SECRET = "bench-{n}"
logger = Logger(service="api-{n}")
log = structlog.get_logger()
app = FastAPI()


@app.get("/items/{{item_id}}")
def read_item(item_id: int, token: str = "") -> dict:
    claims = jwt.decode(token, SECRET, algorithms=["HS256"]) if token else {{}}
    log.info("read_item", item_id=item_id, function={n})
    return orjson.loads(orjson.dumps({{"item_id": item_id, "function": {n}, "claims": claims}}))


def clients():
    """Made on first use: boto3 needs a region, httpx and requests a network."""
    return boto3.session.Session(), httpx.Client(), requests.Session()


handler = Mangum(app, lifespan="off")
'''


def ours_name(n: int) -> str:
    return f"fn{n}"


def builtin_name(n: int) -> str:
    return f"builtin{n}"


def address(name: str) -> str:
    return f"//{API_DIR}:{name}"


def artifact(root: Path, name: str) -> Path:
    return root / "dist" / API_DIR / f"{name}.zip"


def handler_module(n: int) -> str:
    return f"fn_{n}"


def addresses(kind: str, functions: int) -> List[str]:
    name = ours_name if kind == "ours" else builtin_name
    return [address(name(n)) for n in range(functions)]


def prepare(root: Path, functions: int) -> None:
    """Add the `api` resolve and `functions` API functions of each kind to a clone at `root`."""
    directory = add_bench_resolve(root, API_DIR, LOCKFILE, RESOLVE_CONSTRAINTS)
    shutil.copy(REQUIREMENTS, directory / "requirements.txt")
    build = [
        'python_requirements(name="reqs", source="requirements.txt", resolve="api")',
        f'python_sources(name="src", resolve="api", interpreter_constraints={RESOLVE_CONSTRAINTS})',
    ]
    for n in range(functions):
        (directory / f"{handler_module(n)}.py").write_text(HANDLER.format(n=n))
        handler = f"{handler_module(n)}.py:handler"
        build += [
            f'lambda_function(name="{ours_name(n)}", handler="{handler}", runtime="{RUNTIME}", '
            'resolve="api")',
            f'python_awslambda(name="{builtin_name(n)}", handler="{handler}", runtime="{RUNTIME}", '
            'resolve="api")',
        ]
    (directory / "BUILD").write_text("\n".join(build) + "\n")


# ---------------------------------------------------------------------------------------------
# Pants runs, each logged


@dataclass(frozen=True)
class Run:
    """One logged `./pants package`: wall seconds, seconds inside the goal, its processes."""

    whole: float
    goal: float
    processes: List[dict]


Runs = Dict[str, List[Run]]  # kind -> runs


def check_contents(root: Path, targets: Sequence[str]) -> None:
    """Each artifact holds the requirements' packages and its handler's module: a guard against
    packaging less (a requirement that inference missed)."""
    for target in targets:
        name = target.rpartition(":")[2]
        with zipfile.ZipFile(artifact(root, name)) as archive:
            paths = set(archive.namelist())
        module = handler_module(int(name.removeprefix("builtin").removeprefix("fn")))
        expected = {f"{package}/__init__.py" for package in EXPECTED_PACKAGES}
        missing = (expected | {"orjson/__init__.py", f"{module}.py"}) - paths
        if missing:
            raise RuntimeError(f"{artifact(root, name)} lacks {', '.join(sorted(missing))}")


def logger_options(caches: Sequence[str], *, no_local_cache: bool) -> Tuple[str, ...]:
    """The options of every run of a scenario (a pantsd is started with the same ones)."""
    return (
        *caches,
        *(("--no-local-cache",) if no_local_cache else ()),
        f"--backend-packages=+['{WORKUNIT_LOGGER}']",
        "--workunit-logger-enabled",
    )


def logged_run(
    clone, options: Sequence[str], targets: Sequence[str], logdir: Path, pantsd: bool
) -> Run:
    """`./pants package` of `targets`, timed, with the workunit log written to `logdir` (new)."""
    logdir.mkdir(parents=True)
    settle()
    start = time.perf_counter()
    clone.pants(
        *options, f"--workunit-logger-logdir={logdir}", "package", *targets,
        pantsd=pantsd, timeout=3600,
    )  # fmt: skip
    whole = time.perf_counter() - start
    (log,) = logdir.glob("*.json")
    check_contents(clone.root, targets)
    return Run(whole, goal_seconds(log), logged_processes(logdir))


class Logs:
    """A fresh log directory per run, under one new folder of the workspace's."""

    def __init__(self, workspace, scenario: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"workunits-{scenario}-", dir=workspace.root))
        self.count = 0

    def next(self, kind: str) -> Path:
        self.count += 1
        return self.root / f"{self.count}-{kind}"


def no_cache_builds(
    workspace, runs: int, counts: Sequence[int], pantsd_modes: Sequence[bool]
) -> Dict[Tuple[int, bool], Runs]:
    """`--no-local-cache` builds of the first N functions of each kind, named caches warm.

    One clone; its named caches (the built-in's pex caches, our wheels and units) and local store
    are warmed by one untimed build of fn0 and builtin0. Without pantsd, each run is a new Pants;
    with it, a daemon is started with the same options by `--version` (it builds nothing: no
    process is memoised) and stopped after the timed run, so Pants' own start is left out of that
    row only.
    """
    clone = workspace.clone()
    caches = workspace.empty_caches()
    clone.pants(*caches, "package", address(ours_name(0)), address(builtin_name(0)), timeout=3600)
    options = logger_options(caches, no_local_cache=True)
    logs = Logs(workspace, "no-cache")
    results: Dict[Tuple[int, bool], Runs] = {
        (n, pantsd): {kind: [] for kind in KINDS} for n in counts for pantsd in pantsd_modes
    }
    for _ in range(runs):
        for n in counts:
            for pantsd in pantsd_modes:
                for kind in KINDS:
                    try:
                        if pantsd:
                            clone.pants(*options, "--version", pantsd=True, timeout=3600)
                        run = logged_run(
                            clone, options, addresses(kind, n), logs.next(kind), pantsd
                        )
                    finally:
                        if pantsd:
                            clone.kill_pantsd()
                    results[(n, pantsd)][kind].append(run)
    return results


def edit_builds(workspace, runs: int) -> Runs:
    """One source line appended to fn_0.py, then `package` of that function, one warm pantsd
    (warmed up by one untimed build of both kinds), ours and built-in alternately."""
    clone = workspace.clone()
    options = logger_options(workspace.empty_caches(), no_local_cache=False)
    logs = Logs(workspace, "edit")
    targets = {"ours": address(ours_name(0)), "built-in": address(builtin_name(0))}
    results: Runs = {kind: [] for kind in KINDS}
    try:
        clone.pants(*options, "package", *targets.values(), pantsd=True, timeout=3600)
        for run in range(runs):
            for kind, target in targets.items():
                path = artifact(clone.root, target.rpartition(":")[2])
                before = path.read_bytes()
                with (clone.root / API_DIR / f"{handler_module(0)}.py").open("a") as source:
                    source.write(f"# edit {run} before building {target}\n")
                results[kind].append(logged_run(clone, options, [target], logs.next(kind), True))
                if path.read_bytes() == before:
                    raise RuntimeError(f"pantsd did not see the edit: {path} is unchanged")
    finally:
        clone.kill_pantsd()
    return results


# ---------------------------------------------------------------------------------------------
# Tables


def _distributions_compressed(description: str) -> int:
    """How many distributions one "Compress" process compresses: one, or a group of small ones
    ("Compress 26 small distributions: ...")."""
    group = re.match(r"Compress (\d+) small distributions: ", description)
    return int(group.group(1)) if group else 1


def process_note(kind: str, processes: List[dict], functions: int) -> str:
    """How many processes ran, by description (function numbers and distribution names folded)."""
    ran = [p for p in processes if p.get("source") == "Ran"]
    compress = [p["description"] for p in processes if p["description"].startswith("Compress ")]

    def folded(description: str) -> str:
        description = re.sub(r"\b(fn|builtin)\d+\b", r"\1<N>", description)
        description = re.sub(r"^(Compress \d+ small distributions): .*", r"\1", description)
        description = re.sub(r"^Compress (?!\d+ small).*", "Compress <distribution>", description)
        return re.sub(r"(resolve): .*", r"\1: <requirements>", description)

    kinds = Counter(folded(p["description"]) for p in processes)
    by_kind = ", ".join(f"{count}× {what}" for what, count in sorted(kinds.items()))
    note = f"{kind}, {functions} function{'s' if functions > 1 else ''}: {len(processes)} processes"
    note += f", {len(ran)} ran"
    if compress:
        covered = sum(_distributions_compressed(d) for d in compress)
        note += (
            f'; {len(compress)} "Compress" processes for {covered} distributions '
            f"({len(set(compress))} distinct)"
        )
    return f"{note} ({by_kind})"


def _rows(scenario: str, runs: Runs) -> List[Tuple[str, ...]]:
    """Two rows: the whole `./pants` run, and the time inside its `package` goal."""
    return [
        timing_row(f"{scenario}: {part}", *([getattr(r, field) for r in runs[k]] for k in KINDS))
        for part, field in (("whole run", "whole"), ("`package` goal", "goal"))
    ]


def slope_rows(scale: Dict[Tuple[int, bool], Runs], counts: Sequence[int]) -> List[Tuple[str, ...]]:
    """Seconds per added function between consecutive N, from the medians, per kind."""
    rows = []
    for pantsd in sorted({p for _, p in scale}):
        for low, high in zip(counts, counts[1:]):
            for part, field in (("whole run", "whole"), ("`package` goal", "goal")):
                slopes = [
                    (
                        statistics.median(getattr(r, field) for r in scale[(high, pantsd)][kind])
                        - statistics.median(getattr(r, field) for r in scale[(low, pantsd)][kind])
                    )
                    / (high - low)
                    for kind in KINDS
                ]
                rows.append(
                    (
                        f"{low} → {high}, {_pantsd_label(pantsd)}: {part}",
                        f"{slopes[0]:.2f}",
                        f"{slopes[1]:.2f}",
                        # Within the noise, an added function can measure as free or negative.
                        ratio(*slopes) if min(slopes) > 0 else "–",
                    )
                )
    return rows


def _runs(count: int) -> str:
    return f"{count} run{'s' if count > 1 else ''}"


def _pantsd_label(pantsd: bool) -> str:
    return "pantsd started first" if pantsd else "no pantsd"


def section(workspace, runs: int, scale_runs: int, many: int, scale: Sequence[int]) -> str:
    """The API-function tables: one and `many` functions, an edit, the scale curve."""
    single = no_cache_builds(workspace, runs, sorted({1, many}), [False])
    edited = edit_builds(workspace, runs)
    curve = no_cache_builds(workspace, scale_runs, scale, [False, True])
    largest = curve[(scale[-1], False)]
    rows = [
        *_rows("one function, `--no-local-cache`, no pantsd", single[(1, False)]),
        *_rows(f"{many} functions, `--no-local-cache`, no pantsd", single[(many, False)]),
        *_rows("one function, one source line edited, pantsd", edited),
    ]
    curve_rows = [
        row
        for n in scale
        for pantsd in (False, True)
        for row in _rows(f"N = {n}, {_pantsd_label(pantsd)}", curve[(n, pantsd)])
    ]
    pins = ", ".join(REQUIREMENTS.read_text().split())
    notes = [
        "- Each row's first line is the wall time of the whole `./pants` run; the second, the "
        "time inside the `package` goal: the duration of the goal's workunit "
        '(`pants.core.goals.package.package_asset`, "`package` goal") in the workunit logger\'s '
        "JSON of the same run. The difference is Pants' own start (and, without pantsd, its "
        "rule graph) before the goal, and its exit after.",
        "- `--no-local-cache` rows: one clone whose named caches (the built-in's pex caches of "
        "downloads and installed wheels; our wheels and the units laid out from them, "
        "`unit_cache`) and "
        "local store were warmed by one untimed build of `fn0` and `builtin0`; no process result "
        "is read from or written to the cache, so every process runs unless Pants memoises an "
        "identical one within the run. The pantsd rows run the same build after a daemon was "
        "started with the same options by `./pants --version`, and stop it after the run: "
        "nothing is memoised from an earlier build.",
        f"- Edit row: one clone and one pantsd, warmed up by one untimed build of both targets; "
        f"each edit appends a comment line to `{API_DIR}/fn_0.py`, and the artifact must change.",
        "- Processes, from the workunit log (last no-pantsd run of each): "
        + "; ".join(
            process_note(kind, runs_[kind][-1].processes, n)
            for n, runs_ in {many: single[(many, False)], scale[-1]: largest}.items()
            for kind in KINDS
        )
        + "; edit: "
        + "; ".join(process_note(k, edited[k][-1].processes, 1) for k in KINDS)
        + ".",
    ]
    return "\n".join(
        [
            f"## API functions ({pins}; {locked_count()} distributions, {RUNTIME}): "
            "`./pants package`, seconds",
            "",
            f"`//{API_DIR}:fn<N>` (`lambda_function`) against `//{API_DIR}:builtin<N>` "
            f"(`python_awslambda`), same handler files `fn_<N>.py` (FastAPI behind Mangum) in a "
            f"bench-only resolve (`{LOCKFILE}`). Median of {_runs(runs)}.",
            "",
            markdown_table(TIMING_HEADER, rows),
            "",
            *notes,
            "",
            f"### Scale: N functions on the same requirements, `--no-local-cache` "
            f"(median of {_runs(scale_runs)})",
            "",
            markdown_table(TIMING_HEADER, curve_rows),
            "",
            "Seconds per added function (difference of the medians over the difference of N):",
            "",
            markdown_table(
                ("functions", "ours s/function", "built-in s/function", "ours / built-in"),
                slope_rows(curve, scale),
            ),
        ]
    )


def locked_count() -> int:
    """Distributions in the lockfile (the Pants header is `//` comments)."""
    text = (REPO_ROOT / LOCKFILE).read_text()
    lock = json.loads("\n".join(line for line in text.splitlines() if not line.startswith("//")))
    return len(lock["locked_resolves"][0]["locked_requirements"])


def generate_lockfile() -> int:
    """Like bench_heavy's: Pants writes the lock in a clone (its pex reads no pip config; ./pants
    hands it the host's CA bundle), and it is copied back."""
    sys.path.insert(0, str(REPO_ROOT))
    from tests.conftest import make_clone

    with tempfile.TemporaryDirectory(prefix="api-lock-") as workdir:
        clone = make_clone(Path(workdir) / "clone")
        prepare(clone.root, functions=1)
        result = clone.pants("generate-lockfiles", "--resolve=api", timeout=3600)
        print(result.stderr[-2000:], file=sys.stderr)
        shutil.copy(clone.root / LOCKFILE, REPO_ROOT / LOCKFILE)
    print(f"wrote {LOCKFILE}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    if sys.argv[1:] == ["--generate-lockfile"]:
        sys.exit(generate_lockfile())
    sys.exit(__doc__)
