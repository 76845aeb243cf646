"""Verify: check a package just built with `lambda-zip verify`, in a process never cached.

Run when `[lambda-zip].verify` is on, for a zip or an image. The process gets the package and
what it claims to come from (the lockfile, the target's sources, its layers), not the parts or
the resolve: those are what a poisoned cache could have supplied. The verifier takes the locked
wheels from the named wheel cache or fetches them (each checked against the lock's sha256),
packages again and compares every byte (`lambda_rules/lambda_zip/verify_archive.py`, and
`verify_image.py` for an image's layers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pants.backend.python.util_rules.pex_requirements import (
    LoadedLockfile,
    LoadedLockfileRequest,
    Lockfile,
    Resolve,
)
from pants.engine.addresses import Address
from pants.engine.fs import AddPrefix, CreateDigest, Digest, FileContent, MergeDigests
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.logging import LogLevel

from lambda_rules import layers, sandbox_files
from lambda_rules.errors import LambdaRulesError
from lambda_rules.plugin.steps.tool import LambdaZipTool
from lambda_rules.plugin.steps.wheels import NAMED_CACHE, NAMED_CACHE_DIR, NetworkEnvironment

logger = logging.getLogger(__name__)

_VERIFIER_DIR = "__lambda_verifier"
_DIST_DIR = "__lambda_dist"
_SOURCES_DIR = "__lambda_sources"
_LAYERS_DIR = "__lambda_layers"


class PackageNotVerifiedError(LambdaRulesError):
    """A package is not what its lockfile's wheels and its sources give."""


@dataclass(frozen=True)
class LayerArchive:
    """A built layer as the functions deployed with it need it: what it holds, its zip (at
    `path` in `digest`), and all it wrote to dist/ (`dist`: the zip, manifest and SBOM). Defined
    here, the step that assemble and layer_contents both run, so no two steps import each
    other."""

    contents: layers.LayerContents
    digest: Digest
    path: str
    dist: Digest


@dataclass(frozen=True)
class VerifyLambdaRequest:
    address: Address
    # What `package` wrote to dist/ (the zip or image layout, its manifest and SBOM) and the
    # zip's or layout's path in it.
    dist: Digest
    archive_path: str
    sources: Digest
    resolve: str
    layers: tuple[LayerArchive, ...] = ()


@dataclass(frozen=True)
class VerifiedLambda:
    summary: str


@rule(desc="Verify Lambda package", level=LogLevel.DEBUG)
async def verify_lambda(request: VerifyLambdaRequest, tool: LambdaZipTool) -> VerifiedLambda:
    lockfile = await Get(Lockfile, Resolve(request.resolve, use_entire_lockfile=True))
    loaded = await Get(LoadedLockfile, LoadedLockfileRequest(lockfile))
    network_environment = await Get(NetworkEnvironment)
    verifier = await Get(
        Digest,
        CreateDigest(
            FileContent(f"{_VERIFIER_DIR}/{path}", content)
            for path, content in sandbox_files.VERIFIER.read().items()
        ),
    )
    dist, sources, *layer_digests = await MultiGet(
        Get(Digest, AddPrefix(request.dist, _DIST_DIR)),
        Get(Digest, AddPrefix(request.sources, _SOURCES_DIR)),
        *(
            Get(Digest, AddPrefix(layer.dist, f"{_LAYERS_DIR}/{index}"))
            for index, layer in enumerate(request.layers)
        ),
    )
    layer_args = [
        arg
        for index, layer in enumerate(request.layers)
        for arg in ("--layer", f"{layer.contents.address}={_LAYERS_DIR}/{index}/{layer.path}")
    ]
    input_digest = await Get(
        Digest,
        MergeDigests([verifier, dist, sources, loaded.lockfile_digest, *layer_digests]),
    )
    result = await Get(
        FallibleProcessResult,
        Process,
        tool.process(
            argv=(
                "verify",
                f"{_DIST_DIR}/{request.archive_path}",
                "--lockfile",
                loaded.lockfile_path,
                "--source-root",
                _SOURCES_DIR,
                _SOURCES_DIR,
                *layer_args,
                "--cache-dir",
                NAMED_CACHE_DIR,
            ),
            module=sandbox_files.VERIFIER_MODULE,
            sources_first=(_VERIFIER_DIR,),
            input_digest=input_digest,
            env=network_environment,
            append_only_caches=NAMED_CACHE,
            description=f"Verify {request.address}",
            level=LogLevel.DEBUG,
            # Never from a cache: this process is what checks the cache.
            cache_scope=ProcessCacheScope.PER_SESSION,
        ),
    )
    if result.exit_code != 0:
        raise PackageNotVerifiedError(
            f"{request.address}: the package is not what its lockfile's wheels and its sources "
            f"give, so it is not written to dist/ (a remote cache entry may be poisoned):\n"
            f"{result.stderr.decode(errors='replace').strip()}"
        )
    summary = result.stdout.decode().strip().replace(f"{_DIST_DIR}/", "dist/")
    logger.info(f"{request.address}: {summary}")
    return VerifiedLambda(summary)


def rules():
    return collect_rules()
