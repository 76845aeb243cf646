"""Cache poisoning end to end, and how `lambda-zip verify` catches it (issue "lambda-zip verify").

A shared REAPI remote cache trusts whoever may write to it: an action cache entry maps an action
digest (a hash of the command and its inputs) to output digests, and nothing ties the outputs to
the inputs. Here a second client with write access to a real BuildGrid (tools/buildgrid/serve),
talking plain REAPI from BuildGrid's own venv, replaces the part of typing-extensions that a
"Compress ..." process wrote (the process of that distribution alone, or of the small ones
together) with a canonical part made by `lambda-zip build` from the same files, but with one line
added to `typing_extensions.py`, under the same action digest. A fresh clone with an empty local
store then runs `./pants package //fn:lambda` with pants.ci.toml: the compress process is a cache
hit, the poisoned part is merged like any other, and dist/fn/lambda.zip is a valid, reproducible
looking archive that differs from the golden one and runs the added line on import.

What stops it is `lambda-zip verify ARCHIVE --lockfile LOCK --source-root DIR SOURCE...` (also
`python -m lambda_rules verify`): it packages the archive again from the lockfile's wheels (checked
against the lock's sha256) and the sources alone, trusting no cache, compares every entry, and
exits 1 naming each differing entry with its distribution. A CI deployment runs it in the deploy
job, after `pants package` and before `terraform apply`, and refuses to deploy on a non-zero exit:

    ./pants --pants-config-files=pants.ci.toml package //fn:lambda
    lambda-zip verify dist/fn/lambda.zip \\
        --lockfile 3rdparty/python/default.lock --source-root fn fn/app.py || exit 1  # stops here
    terraform apply                                                                  # not reached

so the poisoned archive below is built, but never deployed. The second test checks exactly that
gate: verify fails on the poisoned archive, naming `typing_extensions.py` and typing-extensions,
and passes on the honest one built in another clone against the same server before the poisoning.
It runs the `lambda-zip` that `pip install 'lambda-rules[package]'` installs (the `cli` fixture),
as a deploy job would: verify resolves with the pex version the Pants rules run, which the test
venv does not have. The third test shows the same gate inside the build (`[lambda-zip].verify`):
Pants fails and writes no package to dist/.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import REPO_ROOT, Clone, file_sha256_hex, make_clone
from tests.e2e.test_package import EXAMPLE_GOLDEN_SHA256
from tests.remote_cache.test_remote_cache import (
    SERVE,
    BuildGrid,
    CacheRun,
    cache_run,
    ci_args,
    package,
)

pytestmark = [pytest.mark.e2e, pytest.mark.remote_cache]

# The unit poisoned: pure Python (one module and its dist-info), so its part is easy to rebuild.
DISTRIBUTION = "typing-extensions"
VERSION = "4.16.0"
UNIT = f"{DISTRIBUTION} {VERSION} for python3.12 on x86_64"
POISONED_FILE = "typing_extensions.py"
# What the attacker adds: it runs on every cold start, when the handler imports pydantic.
PAYLOAD = b'\n__import__("os").environ["POISONED_BY_THE_REMOTE_CACHE"] = "1"\n'

VERIFY = [
    "verify",
    "dist/fn/lambda.zip",
    "--lockfile",
    "3rdparty/python/default.lock",
    "--source-root",
    "fn",
    "fn/app.py",
]

# The second client: plain REAPI over gRPC, run by the Python of BuildGrid's venv (grpc and the
# REAPI protos are there, not in the test venv). `read ACTION DIR`: every output file of ACTION's
# cache entry, loose (`output_files`) or in an output directory (a `Tree` blob), written under DIR
# at its output path. `replace ACTION PATH FILE`: upload FILE's bytes to the CAS
# (FindMissingBlobs, BatchUpdateBlobs), point the output PATH at them, a new `Tree` if PATH is in
# an output directory, and write the entry again (UpdateActionResult), the rest of the honest
# ActionResult (exit code, stdout, metadata, the other outputs) as it was.
REAPI_CLIENT = """\
import hashlib, os, sys
import grpc
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as pb
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as rpc

command, address, action_hash, action_size, *args = sys.argv[1:]
channel = grpc.insecure_channel(address.removeprefix("grpc://"))
action_cache = rpc.ActionCacheStub(channel)
cas = rpc.ContentAddressableStorageStub(channel)
action = pb.Digest(hash=action_hash, size_bytes=int(action_size))


def digest_of(data):
    return pb.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def read_blob(digest):
    (blob,) = cas.BatchReadBlobs(pb.BatchReadBlobsRequest(digests=[digest])).responses
    assert blob.status.code == 0, blob.status
    return blob.data


def upload(*blobs):
    wanted = {digest_of(b).hash: b for b in blobs}
    request = pb.FindMissingBlobsRequest(blob_digests=[digest_of(b) for b in wanted.values()])
    missing = cas.FindMissingBlobs(request).missing_blob_digests
    requests = [pb.BatchUpdateBlobsRequest.Request(digest=d, data=wanted[d.hash]) for d in missing]
    for done in cas.BatchUpdateBlobs(pb.BatchUpdateBlobsRequest(requests=requests)).responses:
        assert done.status.code == 0, done.status


def cached_result():
    return action_cache.GetActionResult(pb.GetActionResultRequest(action_digest=action))


def tree_of(output_directory):
    tree = pb.Tree()
    tree.ParseFromString(read_blob(output_directory.tree_digest))
    children = {digest_of(c.SerializeToString()).hash: c for c in tree.children}
    return tree, children


def files_in(directory, children, prefix):
    for node in directory.files:
        yield f"{prefix}/{node.name}", node.digest
    for node in directory.directories:
        yield from files_in(children[node.digest.hash], children, f"{prefix}/{node.name}")


def output_files(result):
    for output in result.output_files:
        yield output.path, output.digest
    for output in result.output_directories:
        tree, children = tree_of(output)
        yield from files_in(tree.root, children, output.path)


# `directory` with the file at `names` pointing at `digest`; the new subdirectories go to
# `replaced` (old digest hash -> new Directory).
def with_file(directory, children, names, digest, replaced):
    new = pb.Directory()
    new.CopyFrom(directory)
    name, *rest = names
    if not rest:
        (node,) = [n for n in new.files if n.name == name]
        node.digest.CopyFrom(digest)
        return new
    (node,) = [n for n in new.directories if n.name == name]
    child = with_file(children[node.digest.hash], children, rest, digest, replaced)
    replaced[node.digest.hash] = child
    node.digest.CopyFrom(digest_of(child.SerializeToString()))
    return new


def replace(result, path, digest):
    for output in result.output_files:
        if output.path == path:
            output.digest.CopyFrom(digest)
            return
    for output in result.output_directories:
        if path.startswith(output.path + "/"):
            tree, children = tree_of(output)
            replaced = {}
            names = path[len(output.path) + 1 :].split("/")
            root = with_file(tree.root, children, names, digest, replaced)
            new_children = [replaced.get(h, c) for h, c in children.items()]
            new_tree = pb.Tree(root=root, children=new_children)
            directories = [d.SerializeToString() for d in [root, *replaced.values()]]
            upload(new_tree.SerializeToString(), *directories)
            output.tree_digest.CopyFrom(digest_of(new_tree.SerializeToString()))
            if output.HasField("root_directory_digest"):
                output.root_directory_digest.CopyFrom(digest_of(root.SerializeToString()))
            return
    sys.exit(f"{path}: not an output of the action")


if command == "read":
    (out,) = args
    for path, digest in output_files(cached_result()):
        os.makedirs(os.path.dirname(os.path.join(out, path)), exist_ok=True)
        with open(os.path.join(out, path), "wb") as f:
            f.write(read_blob(digest))
elif command == "replace":
    path, file = args
    with open(file, "rb") as f:
        data = f.read()
    upload(data)
    result = cached_result()
    replace(result, path, digest_of(data))
    action_cache.UpdateActionResult(
        pb.UpdateActionResultRequest(action_digest=action, action_result=result)
    )
    assert dict(output_files(cached_result()))[path] == digest_of(data), "the entry was kept"
else:
    sys.exit(f"unknown command {command}")
"""


@dataclass(frozen=True)
class ActionDigest:
    hash: str
    size_bytes: int


@dataclass
class Poisoning:
    """What the honest writer, the attacker and the victim did against one BuildGrid."""

    server: BuildGrid
    honest: Clone
    poisoned: Clone
    compress: str
    action: ActionDigest
    part_path: str
    honest_part: bytes
    rebuilt_honest_part: bytes
    poisoned_part: bytes
    victim_run: CacheRun


def compress_action(run: CacheRun) -> tuple[str, ActionDigest]:
    """The process that compresses UNIT (alone, or with other small units) and the REAPI action
    digest Pants looked it up by: its debug log (`-ldebug`, as `package` runs it) names both on
    every remote cache hit or miss."""
    found = [
        (description, ActionDigest(fingerprint, int(size)))
        for description, fingerprint, size in re.findall(
            r'remote cache (?:hit|miss) for: "(Compress [^"]*)" '
            r"digest=Digest \{ hash: Fingerprint<([0-9a-f]{64})>, size_bytes: (\d+) \}",
            run.log,
        )
        if re.search(rf"(?:: |, |^Compress ){re.escape(UNIT)}(?:,|$)", description)
    ]
    assert len(found) == 1, f"{UNIT}: {found}; lookups: {run.hits + run.misses}"
    return found[0]


def buildgrid_python() -> Path:
    """The Python of the venv tools/buildgrid/serve installed BuildGrid into (it started one)."""
    loader = importlib.machinery.SourceFileLoader("buildgrid_serve", str(SERVE))
    serve = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(serve)
    return serve.BGD.parent / "python"


def reapi(tmp: Path, server: BuildGrid, command: str, action: ActionDigest, *args: str) -> None:
    script = tmp / "reapi_client.py"
    script.write_text(REAPI_CLIENT)
    argv = [command, server.address, action.hash, str(action.size_bytes), *args]
    subprocess.run([str(buildgrid_python()), str(script), *argv], check=True, timeout=60)


def part_holding(outputs: Path, name: str) -> str:
    """The output path of the one part, among an action's outputs, that holds the entry `name`."""
    found = []
    for path in sorted(p for p in outputs.rglob("*") if p.is_file()):
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                if name in zf.namelist():
                    found.append(str(path.relative_to(outputs)))
    assert len(found) == 1, found
    return found[0]


def lambda_zip_build(tree: Path, out: Path) -> bytes:
    """`lambda-zip build DIR -o OUT` as the compress process runs it: no SOURCE_DATE_EPOCH."""
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    command = [sys.executable, "-m", "lambda_rules.zipper", "build", str(tree), "-o", str(out)]
    subprocess.run(command, check=True, env=env, cwd=REPO_ROOT, timeout=120)
    return out.read_bytes()


def lambda_zip(cli, clone: Clone, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed `lambda-zip ARGS`, run from the clone's root as a deploy job would."""
    # CPython 3.9, as tests/e2e/test_verify.py: one install of the CLI for both in one session.
    command = [str(cli(9)), *args]
    return subprocess.run(command, cwd=clone.root, capture_output=True, text=True, timeout=900)


def named_in_stderr() -> str:
    """How verify names the altered entry with its distribution: "typing_extensions.py
    (typing-extensions 4.16.0...", the entry at the archive's root, not some other path."""
    entry, distribution = re.escape(POISONED_FILE), re.escape(f"{DISTRIBUTION} {VERSION}")
    return rf"(?<![\w/.-]){entry} \({distribution}\b"


def archive_file(clone: Clone, name: str) -> bytes:
    with zipfile.ZipFile(clone.root / "dist/fn/lambda.zip") as zf:
        return zf.read(name)


@pytest.fixture(scope="module")
def poisoning(tmp_path_factory) -> Iterator[Poisoning]:
    tmp = tmp_path_factory.mktemp("poisoning")
    server = BuildGrid(tmp / "buildgrid")
    server.start()
    try:
        # 1. An honest CI build fills the shared cache.
        honest = make_clone(tmp / "honest/repo")
        written = package(honest, server)
        assert written.counters["remote_cache_write_errors"] == 0, written.log
        compress, action = compress_action(written)

        # 2. The attacker reads the outputs of that action, finds the part that holds the module,
        # rebuilds it from the same files with one line added to the module, and writes the
        # action's entry again, under the same action digest, with that part in its place.
        attack = tmp / "attack"
        reapi(tmp, server, "read", action, str(attack / "outputs"))
        part_path = part_holding(attack / "outputs", POISONED_FILE)
        honest_part = (attack / "outputs" / part_path).read_bytes()
        with zipfile.ZipFile(io.BytesIO(honest_part)) as zf:
            zf.extractall(attack / "honest")
            zf.extractall(attack / "poisoned")
        rebuilt_honest_part = lambda_zip_build(attack / "honest", attack / "rebuilt.zip")
        with open(attack / "poisoned" / POISONED_FILE, "ab") as f:
            f.write(PAYLOAD)
        poisoned_part = lambda_zip_build(attack / "poisoned", attack / "poisoned.zip")
        reapi(tmp, server, "replace", action, part_path, str(attack / "poisoned.zip"))

        # 3. Another CI build, in a fresh clone with an empty local store, reads the cache.
        poisoned = make_clone(tmp / "victim/repo")
        victim_run = package(poisoned, server)
        assert compress_action(victim_run) == (compress, action), "not the same action"
        yield Poisoning(
            server=server,
            honest=honest,
            poisoned=poisoned,
            compress=compress,
            action=action,
            part_path=part_path,
            honest_part=honest_part,
            rebuilt_honest_part=rebuilt_honest_part,
            poisoned_part=poisoned_part,
            victim_run=victim_run,
        )
    finally:
        server.stop()


def test_a_part_poisoned_in_the_remote_cache_ships_in_the_package(poisoning):
    # The honest build is the golden archive.
    assert file_sha256_hex(poisoning.honest.root / "dist/fn/lambda.zip") == EXAMPLE_GOLDEN_SHA256
    honest_module = archive_file(poisoning.honest, POISONED_FILE)
    assert PAYLOAD not in honest_module

    # The attacker's part is what `lambda-zip build` makes of the unit's files: the honest files
    # give the honest part byte for byte, so nothing in its form gives the poisoned one away.
    assert poisoning.rebuilt_honest_part == poisoning.honest_part
    assert poisoning.poisoned_part != poisoning.honest_part
    with zipfile.ZipFile(io.BytesIO(poisoning.poisoned_part)) as zf:
        assert zf.read(POISONED_FILE) == honest_module + PAYLOAD

    # The victim took the part from the cache instead of compressing the unit's files.
    run = poisoning.victim_run
    assert run.hit(poisoning.compress), f"hits={run.hits} misses={run.misses}"
    assert run.counters["remote_cache_read_errors"] == 0
    assert poisoning.compress not in re.findall(r"Running (.*?) under semaphore", run.log)

    # Its package is valid, not the golden one, and carries the altered module; all else is equal.
    archive = poisoning.poisoned.root / "dist/fn/lambda.zip"
    digest = file_sha256_hex(archive)
    assert digest != EXAMPLE_GOLDEN_SHA256
    manifest = json.loads((poisoning.poisoned.root / "dist/fn/lambda.json").read_text())
    assert manifest["sha256"] == digest
    with zipfile.ZipFile(archive) as zf:
        assert zf.testzip() is None
        poisoned_entries = {i.filename: zf.read(i) for i in zf.infolist()}
    with zipfile.ZipFile(poisoning.honest.root / "dist/fn/lambda.zip") as zf:
        honest_entries = {i.filename: zf.read(i) for i in zf.infolist()}
    assert poisoned_entries[POISONED_FILE] == honest_module + PAYLOAD
    changed = sorted(
        n
        for n in honest_entries.keys() | poisoned_entries.keys()
        if honest_entries.get(n) != poisoned_entries.get(n)
    )
    assert changed == [POISONED_FILE]


# The acceptance check of issue "lambda-zip verify": the deploy job's gate.
def test_verify_refuses_the_poisoned_package_and_accepts_the_honest_one(poisoning, cli):
    honest = lambda_zip(cli, poisoning.honest, *VERIFY)
    assert honest.returncode == 0, honest.stdout + honest.stderr
    assert honest.stdout.startswith("verified dist/fn/lambda.zip: "), honest.stdout

    poisoned = lambda_zip(cli, poisoning.poisoned, *VERIFY)
    assert poisoned.returncode == 1, poisoned.stdout + poisoned.stderr
    assert "Traceback" not in poisoned.stderr, poisoned.stderr
    assert re.search(named_in_stderr(), poisoned.stderr), poisoned.stderr


def test_pants_with_lambda_zip_verify_writes_no_poisoned_package(poisoning, tmp_path):
    """The same gate inside the build: with `[lambda-zip].verify`, Pants checks each package in a
    process that is never cached, and fails without writing it to dist/."""
    clone = make_clone(tmp_path / "repo")  # another CI run, with an empty local store
    *options, goal, target = ci_args(clone, poisoning.server, "//fn:lambda")
    result = clone.pants(*options, "--lambda-zip-verify", goal, target, check=False)
    assert result.returncode != 0, result.stderr
    assert cache_run(result.stderr).hit(poisoning.compress)
    assert re.search(named_in_stderr(), result.stderr), result.stderr
    assert not (clone.root / "dist/fn/lambda.zip").exists()
