"""`./pants package` of the example function: our `lambda_function` against the built-in
`python_awslambda` (`[lambdex] layout = "zip"` in pants.toml), same source, same requirements,
same runtime.

All builds run in clones of one snapshot of the working tree (so edits made meanwhile cannot
change what is measured), with `//fn:builtin` added next to `//fn:lambda`. Each scenario runs the
two targets alternately, so that changes in the machine's load hit both alike.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from common import (
    REPO_ROOT,
    RUNTIME,
    TIMING_HEADER,
    Artifact,
    goal_seconds,
    goal_started_at,
    logger_options,
    markdown_table,
    ratio,
    settle,
    timing_row,
)

from tests.conftest import Clone, make_clone

BUILDGRID_SERVE = REPO_ROOT / "tools/buildgrid/serve"
REMOTE_CACHE_CONFIG = "pants.ci.toml"
# What pantsd prints when it starts its scheduler: "Initializing scheduler..." the first time,
# "<reason>: reinitializing scheduler..." when it starts it again.
_SCHEDULER_STARTED = re.compile(r"[Ii]nitializing scheduler")


@dataclass(frozen=True)
class Target:
    label: str
    address: str
    artifact: str
    handler_module: str


OURS = Target("ours (`lambda_function`)", "//fn:lambda", "dist/fn/lambda.zip", "app")
# The built-in re-exports the handler as `lambda_function.handler`.
BUILTIN = Target(
    "built-in (`python_awslambda`)", "//fn:builtin", "dist/fn/builtin.zip", "lambda_function"
)
TARGETS = (OURS, BUILTIN)
BUILTIN_BUILD_TARGET = (
    f'\npython_awslambda(name="builtin", handler="app.py:handler", runtime="{RUNTIME}")\n'
)

Timings = Dict[Target, List[float]]


class Workspace:
    """Clones of one snapshot of the working tree, and empty Pants caches, under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.snapshot = make_clone(root / "snapshot")
        with (self.snapshot.root / "fn/BUILD").open("a") as build:
            build.write(BUILTIN_BUILD_TARGET)
        self._numbers = itertools.count()

    def clone(self) -> Clone:
        path = self.root / f"clone-{next(self._numbers)}"
        shutil.copytree(self.snapshot.root, path, symlinks=True)
        return Clone(path)

    def empty_caches(self) -> Tuple[str, ...]:
        """Options for a local store and named caches (pex's, pip's) that nothing has used yet."""
        path = self.root / f"caches-{next(self._numbers)}"
        return (
            f"--local-store-dir={path / 'lmdb_store'}",
            f"--named-caches-dir={path / 'named_caches'}",
        )


@dataclass(frozen=True)
class TimedRun:
    seconds: float
    stderr: str
    # Seconds since the epoch at launch, to set against the workunits' clock.
    launched_at: float

    def after_start(self, log: Path) -> float:
        """The whole run less Pants' start: from the goal's first moment to the exit, as its
        workunit log (`log`) tells when the goal began."""
        return self.launched_at + self.seconds - goal_started_at(log)


def timed_package(clone: Clone, target: Target, *options: str, pantsd: bool = False) -> TimedRun:
    """Wall seconds of `./pants package` of one target, Pants' stderr, and when it began."""
    settle()
    launched_at, start = time.time(), time.perf_counter()
    result = clone.pants(*options, "package", target.address, pantsd=pantsd)
    return TimedRun(time.perf_counter() - start, result.stderr, launched_at)


def artifacts_of(clones: Dict[Target, Clone]) -> Tuple[Artifact, Artifact]:
    ours, builtin = (
        Artifact(target.label, clones[target].root / target.artifact, target.handler_module)
        for target in TARGETS
    )
    return ours, builtin


def build_artifacts(workspace: Workspace) -> Tuple[Artifact, Artifact]:
    """Package both targets once, with the user's Pants caches: for the size and cold-start
    tables."""
    clone = workspace.clone()
    clone.pants("package", OURS.address, BUILTIN.address)
    return artifacts_of({OURS: clone, BUILTIN: clone})


@dataclass(frozen=True)
class LoggedTimings:
    """Per target: each run's wall seconds, the seconds inside its `package` goal, and the whole
    run less Pants' start (its workunit log tells both)."""

    whole: Timings
    goal: Timings
    after_start: Timings

    @classmethod
    def empty(cls) -> LoggedTimings:
        return cls(*({target: [] for target in TARGETS} for _ in range(3)))

    def add(self, target: Target, run: TimedRun, logdir: Path) -> None:
        (log,) = logdir.glob("*.json")
        self.whole[target].append(run.seconds)
        self.goal[target].append(goal_seconds(log))
        self.after_start[target].append(run.after_start(log))


def logged_package(clone: Clone, target: Target, *options: str) -> Tuple[TimedRun, Path]:
    """`timed_package` with the workunit logger on, and the folder it logged into."""
    logdir = clone.root / ".workunits"
    logdir.mkdir()
    return timed_package(clone, target, *options, *logger_options(logdir)), logdir


def cold_builds(workspace: Workspace, runs: int) -> Tuple[LoggedTimings, Tuple[Artifact, Artifact]]:
    """Each cold run's timings, per target."""
    timings = LoggedTimings.empty()
    clones: Dict[Target, Clone] = {}
    for _ in range(runs):
        for target in TARGETS:
            clones[target] = workspace.clone()
            run, logdir = logged_package(clones[target], target, *workspace.empty_caches())
            timings.add(target, run, logdir)
    return timings, artifacts_of(clones)


def pantsd_builds(workspace: Workspace, runs: int) -> Tuple[Timings, Timings]:
    """No-op rebuilds, then rebuilds after a one-line edit of fn/app.py, all with one warm
    pantsd."""
    clone = workspace.clone()
    caches = workspace.empty_caches()
    noop: Timings = {target: [] for target in TARGETS}
    edited: Timings = {target: [] for target in TARGETS}
    try:
        clone.pants(*caches, "package", OURS.address, BUILTIN.address, pantsd=True)  # warms up
        for _ in range(runs):
            for target in TARGETS:
                noop[target].append(timed_package(clone, target, *caches, pantsd=True).seconds)
        for run in range(runs):
            for target in TARGETS:
                artifact = clone.root / target.artifact
                before = artifact.read_bytes()
                with (clone.root / "fn/app.py").open("a") as source:
                    source.write(f"# edit {run} before building {target.address}\n")
                edited[target].append(timed_package(clone, target, *caches, pantsd=True).seconds)
                if artifact.read_bytes() == before:
                    raise RuntimeError(
                        f"pantsd did not see the edit of fn/app.py: {artifact} is unchanged"
                    )
    finally:
        clone.kill_pantsd()
    return noop, edited


def _counter(name: str, pants_stderr: str) -> int:
    match = re.search(rf"^\s*{name}: (\d+)$", pants_stderr, re.MULTILINE)
    return int(match.group(1)) if match else 0


@dataclass(frozen=True)
class RemoteCacheTimings:
    logged: LoggedTimings
    # The whole run with pantsd booted first, in a further new clone with empty local caches:
    # what a developer waits for once Pants is up, the boot being the same for both kinds.
    booted: Timings


def remote_cache_builds(
    workspace: Workspace, runs: int
) -> Tuple[Optional[RemoteCacheTimings], str]:
    """Builds with empty local caches that read a remote cache one earlier build has filled.

    Returns the timings and a note, or no timings and why the scenario was skipped.
    """
    if not BUILDGRID_SERVE.exists():
        return None, f"Skipped: {BUILDGRID_SERVE.relative_to(REPO_ROOT)} does not exist"
    data_dir = workspace.root / "buildgrid"
    serve = [str(BUILDGRID_SERVE)]
    started = subprocess.run(
        [*serve, "start", "--data-dir", str(data_dir)], capture_output=True, text=True
    )
    if started.returncode != 0:
        why = f"Skipped: the BuildGrid server did not start: {started.stderr.strip()[-500:]}"
        return None, why
    address = started.stdout.strip()
    remote = (f"--pants-config-files={REMOTE_CACHE_CONFIG}", f"--remote-store-address={address}")
    timings = LoggedTimings.empty()
    booted: Timings = {target: [] for target in TARGETS}
    stats = {}
    try:
        workspace.clone().pants(
            *remote, *workspace.empty_caches(), "package", OURS.address, BUILTIN.address
        )
        for _ in range(runs):
            for target in TARGETS:
                options = (*remote, "--no-remote-cache-write", *workspace.empty_caches())
                run, logdir = logged_package(workspace.clone(), target, *options)
                timings.add(target, run, logdir)
                stats[target] = run.stderr
                booted[target].append(_booted_package(workspace, target, remote))
    finally:
        subprocess.run([*serve, "stop", "--data-dir", str(data_dir)], check=True)
    hits = "; ".join(
        f"{target.label}: {_counter('remote_cache_requests_cached', stats[target])} of "
        f"{_counter('remote_cache_requests', stats[target])} remote cache lookups hit, "
        f"{_counter('local_execution_requests', stats[target])} processes ran locally"
        for target in TARGETS
    )
    return RemoteCacheTimings(timings, booted), f"Last run, per Pants' `[stats]`: {hits}"


def _booted_package(workspace: Workspace, target: Target, remote: Tuple[str, ...]) -> float:
    """Wall seconds of one package from the remote cache in a new clone with empty local caches,
    after `--version` has booted pantsd there with the same options (so nothing is built yet)."""
    clone = workspace.clone()
    options = (*remote, "--no-remote-cache-write", *workspace.empty_caches())
    try:
        booted = clone.pants(*options, "--version", pantsd=True)
        if _SCHEDULER_STARTED.search(booted.stderr) is None:
            raise AssertionError(f"`--version` did not start pantsd in {clone.root}")
        run = timed_package(clone, target, *options, pantsd=True)
    finally:
        clone.kill_pantsd()
    if _SCHEDULER_STARTED.search(run.stderr):
        raise AssertionError(f"pantsd restarted for the package run in {clone.root}:\n{run.stderr}")
    return run.seconds


def _row(scenario: str, timings: Optional[Timings]) -> Tuple[str, ...]:
    if timings is None:
        return scenario, "skipped", "skipped", "–", "–", "–"
    return timing_row(scenario, *(timings[target] for target in TARGETS))


def build_section(workspace: Workspace, runs: int) -> Tuple[str, Tuple[Artifact, Artifact]]:
    """The `./pants package` table, and the artifacts of the cold builds."""
    cold, artifacts = cold_builds(workspace, runs)
    noop, edited = pantsd_builds(workspace, runs)
    remote, remote_note = remote_cache_builds(workspace, runs)
    logged = remote and remote.logged
    rows = [
        _row("cold: empty local store and named caches, no pantsd", cold.whole),
        _row("cold: the same runs, `package` goal", cold.goal),
        _row("cold: the same runs, whole run less Pants' start", cold.after_start),
        _row("warm no-op, pantsd", noop),
        _row("one source file edited, pantsd", edited),
        _row(
            "warm remote cache, empty local store and named caches, no pantsd",
            logged and logged.whole,
        ),
        _row("warm remote cache: the same runs, `package` goal", logged and logged.goal),
        _row(
            "warm remote cache: the same runs, whole run less Pants' start",
            logged and logged.after_start,
        ),
        _row(
            "warm remote cache, the same but pantsd booted first (`--version`)",
            remote and remote.booted,
        ),
    ]
    text = [
        "## `./pants package //fn:<target>`: wall seconds",
        "",
        f"Median of {runs} runs each; `{OURS.address}` against `{BUILTIN.address}`, {RUNTIME}.",
        "",
        markdown_table(TIMING_HEADER, rows),
        "",
        "- Cold: a fresh clone, local store and named caches per run, so every distribution is "
        "downloaded from PyPI again, and every tool is installed again (ours from its lock, the "
        "built-in's PEXes by pex). Pants itself is "
        "bootstrapped once per machine (`~/.cache/lambda_rules`) and is not part of the time. "
        "The goal row is the duration of the `package` goal's workunit in the workunit logger's "
        "JSON of the same runs; the row below it is the whole run less Pants' start, from the "
        "goal's first moment (its workunit's start, on the wall clock) to the exit: the goal and "
        "what Pants does after it (the built-in's includes ending the processes it started "
        "locally while its remote cache lookups ran, Pants' default).",
        "- Warm no-op and edit: one clone and one pantsd, warmed up by one untimed build; "
        "each edit appends a comment line to `fn/app.py`.",
        f"- Remote cache: a local BuildGrid ({BUILDGRID_SERVE.relative_to(REPO_ROOT)}) with "
        f"`{REMOTE_CACHE_CONFIG}`, filled by one build of both targets; then each run in a new "
        f"clone with empty local caches, reading only, with the workunit logger on for both "
        f"kinds (the goal row). The booted row: per run a further new clone with empty local "
        f"caches, where `./pants --version` starts pantsd with the same options first; then the "
        f"timed `./pants package` is the whole client run without Pants' boot, which is the same "
        f"for both kinds (without the workunit logger). {remote_note}.",
    ]
    return "\n".join(text), artifacts


def size_section(ours: Artifact, builtin: Artifact) -> str:
    def measures(artifact: Artifact) -> Tuple[int, int, int, int]:
        with zipfile.ZipFile(artifact.path) as archive:
            entries = archive.infolist()
        files = [entry for entry in entries if not entry.is_dir()]
        return (
            artifact.path.stat().st_size,
            sum(e.file_size for e in files),
            len(entries),
            len(files),
        )

    ours_measures, builtin_measures = measures(ours), measures(builtin)
    rows = [
        (artifact.label, *(f"{value:,}" for value in values))
        for artifact, values in ((ours, ours_measures), (builtin, builtin_measures))
    ]
    rows.append(
        ("ours / built-in", *(ratio(a, b) for a, b in zip(ours_measures, builtin_measures)))
    )
    return "\n".join(
        [
            "## Artifact size",
            "",
            markdown_table(("artifact", "zip bytes", "unzipped bytes", "entries", "files"), rows),
        ]
    )
