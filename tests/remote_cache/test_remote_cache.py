"""The shared REAPI remote cache end to end: a real BuildGrid (tools/buildgrid/serve), real Pants
runs in clones at different paths with empty local stores and pants.ci.toml, faults included."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, Clone, make_clone

pytestmark = [pytest.mark.e2e, pytest.mark.remote_cache]

SERVE = REPO_ROOT / "tools/buildgrid/serve"

# The processes our rules run for one lambda_function, by the start of their descriptions: one
# "Unpack" that fetches the locked wheels and lays each out as a unit, the tool (its requirements
# installed from its lock by the same wheel step, and the bytecode of our sources, compiled
# meanwhile), a "Compress" per large distribution unit
# and one for all the small ones together (plugin/steps/parts.py: `zip_parts`), then "Zip"
# merges the parts and zips the first-party code, and "Write SBOM template" describes the
# distributions (the rules add the archive's digest and the target's name).
CACHED_PROCESSES = (
    "Unpack ",
    "Install ",  # "Install <N> wheels of the lambda-zip tool"
    "Compile the lambda-zip tool",
    "Compress ",
    "Zip ",
    "Write SBOM template of",
)
# //fn:lambda: six distributions, pydantic-core alone and the five small ones in one process.
COMPRESS_PROCESSES = 2
CACHED_PROCESS_COUNT = len(CACHED_PROCESSES) - 1 + COMPRESS_PROCESSES

BIG_BLOB_BYTES = 25 * 1024 * 1024
BIG_LAMBDA_BUILD = """
resource(name="blob", source="blob.bin")
python_sources(name="src")
lambda_function(
    name="lambda", handler="handler.py:handler", runtime="python3.12", dependencies=[":blob"]
)
"""
BIG_LAMBDA_HANDLER = "def handler(event, context):\n    return {}\n"


@dataclass
class BuildGrid:
    """One BuildGrid server with its own data directory, driven through tools/buildgrid/serve."""

    data_dir: Path
    address: str = ""

    def start(self) -> None:
        out = subprocess.run(
            [str(SERVE), "start", "--data-dir", str(self.data_dir)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.address = out.strip()

    def stop(self) -> None:
        subprocess.run([str(SERVE), "stop", "--data-dir", str(self.data_dir)], check=True)

    def blob(self, sha256_hex: str) -> Path:
        """Where the disk storage keeps a blob."""
        return self.data_dir / "storage/cas/objects" / sha256_hex[:2] / sha256_hex[2:]


@dataclass
class CacheRun:
    """What one `./pants package` did with the remote cache."""

    hits: list[str]
    misses: list[str]
    counters: dict[str, int]
    log: str

    def hit(self, process: str) -> bool:
        return any(d.startswith(process) for d in self.hits)

    def missed(self, process: str) -> bool:
        return any(d.startswith(process) for d in self.misses)


@pytest.fixture
def buildgrid(tmp_path):
    server = BuildGrid(tmp_path / "buildgrid")
    server.start()
    yield server
    server.stop()


def ci_args(clone: Clone, server: BuildGrid, target: str) -> list[str]:
    """pants.ci.toml against `server`, the clone's own empty local store, debug logs to see hits."""
    return [
        "--pants-config-files=pants.ci.toml",
        f"--remote-store-address={server.address}",
        f"--local-store-dir={clone.root.parent / 'local-store'}",
        "-ldebug",
        "package",
        target,
    ]


def cache_run(log: str) -> CacheRun:
    lookups = re.findall(r'remote cache (hit|miss) for: "(.*?)" digest=', log)
    counters_section = log.rpartition("Counters:")[2]
    return CacheRun(
        hits=[d for kind, d in lookups if kind == "hit"],
        misses=[d for kind, d in lookups if kind == "miss"],
        counters={k: int(v) for k, v in re.findall(r"^  (\w+): (\d+)$", counters_section, re.M)},
        log=log,
    )


def package(clone: Clone, server: BuildGrid, target: str = "//fn:lambda") -> CacheRun:
    result = clone.pants(*ci_args(clone, server, target))
    return cache_run(result.stderr)


def dist(clone: Clone) -> dict[str, bytes]:
    return {p: (clone.root / "dist" / p).read_bytes() for p in clone.dist_files()}


def zip_sha256(clone: Clone, manifest: str = "fn/lambda.json") -> str:
    return json.loads((clone.root / "dist" / manifest).read_text())["sha256"]


def add_big_lambda(clone: Clone) -> None:
    """//big:lambda: ~25 MiB of incompressible, deterministic bytes, so a zip of >= 20 MB."""
    clone.write("big/BUILD", BIG_LAMBDA_BUILD)
    clone.write("big/handler.py", BIG_LAMBDA_HANDLER)
    (clone.root / "big/blob.bin").write_bytes(
        hashlib.shake_256(b"lambda_rules").digest(BIG_BLOB_BYTES)
    )


def assert_all_hit_nothing_run_locally(run: CacheRun, processes=CACHED_PROCESSES) -> None:
    for process in processes:
        assert run.hit(process), (
            f"no remote cache hit for {process!r}: hits={run.hits} misses={run.misses}"
        )
    assert run.misses == []
    assert run.counters["remote_cache_requests_cached"] == len(run.hits)
    # Pants 2.17 starts each process locally at once, in case the lookup is slow, and drops it
    # when the hit arrives: `local_execution_requests` counts those starts, this counts results.
    assert run.counters["remote_cache_speculation_local_completed_first"] == 0
    assert run.counters["remote_cache_speculation_remote_completed_first"] == len(run.hits)
    # Our processes give the lookup a second before starting locally (Pants' own default is no
    # wait), so none of them materialised its inputs for nothing.
    assert re.findall(r"Running (.*?) under semaphore", run.log) == []


@pytest.fixture(scope="module")
def reference_dist(tmp_path_factory) -> dict[str, bytes]:
    """//fn:lambda built without any remote cache: what every cached or faulty build must equal."""
    clone = make_clone(tmp_path_factory.mktemp("reference") / "repo")
    clone.pants(f"--local-store-dir={clone.root.parent / 'local-store'}", "package", "//fn:lambda")
    return dist(clone)


def test_second_clone_gets_every_process_from_the_cache(clone_factory, buildgrid, reference_dist):
    first = clone_factory("writer")
    second = clone_factory("reader-at-another-path")

    written = package(first, buildgrid)
    assert all(written.missed(p) for p in CACHED_PROCESSES), written.misses
    assert written.counters["remote_cache_write_errors"] == 0
    assert written.counters["remote_cache_write_successes"] == CACHED_PROCESS_COUNT

    read = package(second, buildgrid)
    assert_all_hit_nothing_run_locally(read)
    # No distribution is compressed again: every unit's part comes from the cache.
    assert len([d for d in read.hits if d.startswith("Compress ")]) == COMPRESS_PROCESSES
    assert dist(second) == dist(first) == reference_dist


def test_artifact_over_4_mib_travels_through_the_cache(clone_factory, buildgrid):
    first = clone_factory("big-writer")
    second = clone_factory("big-reader")
    for clone in (first, second):
        add_big_lambda(clone)

    written = package(first, buildgrid, "//big:lambda")
    assert written.counters["remote_cache_write_errors"] == 0
    archive = first.root / "dist/big/lambda.zip"
    assert archive.stat().st_size >= 20_000_000
    # Over gRPC's 4 MiB message limit, so only ByteStream could have stored it.
    assert buildgrid.blob(zip_sha256(first, "big/lambda.json")).read_bytes() == archive.read_bytes()

    read = package(second, buildgrid, "//big:lambda")
    # //big:lambda has no requirements, so nothing to resolve or compress: its blob is
    # first-party, zipped by "Zip" itself.
    nothing_to_resolve = ("Unpack ", "Compress ")
    without_requirements = [p for p in CACHED_PROCESSES if p not in nothing_to_resolve]
    assert_all_hit_nothing_run_locally(read, without_requirements)
    assert not [d for d in read.hits if d.startswith("Compress ")], read.hits
    assert dist(second) == dist(first)


def test_server_down_when_the_build_starts(clone_factory, buildgrid, reference_dist):
    clone = clone_factory("server-down")
    buildgrid.stop()

    run = package(clone, buildgrid)
    assert "[WARN] Failed to read from remote cache" in run.log
    assert run.counters["remote_cache_read_errors"] >= 1
    assert run.counters["remote_cache_requests_cached"] == 0
    assert dist(clone) == reference_dist


def test_server_stopped_in_the_middle_of_a_build(clone_factory, buildgrid, reference_dist):
    clone = clone_factory("server-stops")
    command = ["./pants", "--no-pantsd", *ci_args(clone, buildgrid, "//fn:lambda")]
    build = subprocess.Popen(
        command, cwd=clone.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    log_lines = []
    for line in build.stdout:
        log_lines.append(line)
        # The server has answered its first lookup; stop it while that process runs.
        if 'remote cache miss for: "Unpack ' in line:
            buildgrid.stop()
    assert build.wait() == 0, "".join(log_lines)

    run = cache_run("".join(log_lines))
    assert run.missed("Unpack ")
    assert run.counters["remote_cache_read_errors"] + run.counters["remote_cache_write_errors"] >= 1
    assert dist(clone) == reference_dist


def test_cache_entry_with_a_deleted_blob_is_rebuilt_locally(clone_factory, buildgrid):
    first = clone_factory("blob-writer")
    second = clone_factory("blob-reader")
    package(first, buildgrid)
    archive_blob = buildgrid.blob(zip_sha256(first))
    archive_blob.unlink()

    read = package(second, buildgrid)
    # BuildGrid's action cache drops an entry whose outputs are gone from its CAS: a miss.
    assert read.missed("Zip "), read.misses
    assert all(read.hit(p) for p in CACHED_PROCESSES if p != "Zip "), read.hits
    assert dist(second) == dist(first)
    # The local run wrote the result back: the cache is whole again.
    assert archive_blob.read_bytes() == (second.root / "dist/fn/lambda.zip").read_bytes()
