"""`lambda-zip verify`: account for every byte of an archive from its lockfile's wheels and its
sources, so that a poisoned cache or an archive altered after packaging cannot reach production.

The archive is read with exactly the checks `repack` makes (a hostile archive is refused the same
way) and nothing in it is executed. Its manifest says what it claims to be (runtime, architecture,
handler, each distribution and version, bytecode, layers); `local_build.derive` then builds that
package again from trusted inputs only: the locked wheels of exactly those versions, fetched (or
taken from the wheel cache) and checked against the lockfile's sha256s, laid out as `package`
lays them out, the given sources, `.pyc` compiled by the runtime's CPython, and an empty cache of
parts. Because packaging is reproducible, the two archives must be equal
byte for byte; where they are not, every entry that is unexplained, altered or missing is named
with its distribution. The manifest and the SBOM are compared the same way. No Pants imports.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from lambda_rules import manifest
from lambda_rules.errors import LambdaRulesError
from lambda_rules.lambda_zip import local_build, local_cache
from lambda_rules.platforms import lambda_platform
from lambda_rules.zipper.diff import diff_archives
from lambda_rules.zipper.repack import safe_entries
from lambda_rules.zipper.summary import file_sha256

# What the installer writes into a distribution's .dist-info, derived rather than shipped.
_INSTALLER_FILES = ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")


class VerifyError(LambdaRulesError):
    """The inputs do not let `verify` decide (no manifest, an unreadable SBOM, ...)."""


@dataclass(frozen=True)
class VerifyRequest:
    archive: Path
    lockfile: Path
    sources: tuple[Path, ...] = ()
    source_root: Path = Path(".")
    manifest: Path | None = None
    sbom: Path | None = None
    layers: tuple[tuple[str, Path], ...] = ()
    name: str | None = None
    # Wheels are content-addressed and checked against the lock, so their cache may be shared.
    wheel_cache: Path = field(default_factory=lambda: local_cache.default_cache_dir() / "wheels")


@dataclass
class VerifyReport:
    archive: Path
    problems: list[str] = field(default_factory=list)
    # Entries checked, by origin: "distribution files", "installer metadata", ".pyc",
    # "first-party files".
    counts: dict[str, int] = field(default_factory=dict)
    distributions: int = 0
    # What was counted, and what else was checked (an image's files, in its layers).
    counted: str = "entries"
    also: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        checked = ", ".join(f"{n:,} {what}" for what, n in self.counts.items() if n)
        return (
            f"verified {self.archive}: {sum(self.counts.values()):,} {self.counted}, every one "
            f"accounted for ({checked}; {self.distributions} distributions from the lockfile's "
            f"wheels){self.also}"
        )


def verify(request: VerifyRequest) -> VerifyReport:
    """Check the archive (and its manifest and SBOM) against what its inputs give."""
    archive = request.archive
    report = VerifyReport(archive)
    actual = _entries(archive)
    manifest_path = request.manifest or archive.with_suffix(".json")
    claims = _read_manifest(manifest_path)
    sbom_path = request.sbom or _beside(archive, ".cdx.json")
    actual_sha256 = file_sha256(archive)[0]
    if claims.sha256_hex != actual_sha256:
        report.problems.append(
            f"{manifest_path}: describes an archive with sha256 {claims.sha256_hex}, not this "
            f"one ({actual_sha256})"
        )
    try:
        platform = lambda_platform(claims.runtime, claims.architecture)
    except ValueError as error:
        raise VerifyError(f"{manifest_path}: not a lambda_rules manifest ({error})") from None
    pins = tuple(f"{d.name}=={d.version}" for d in claims.distributions)
    with tempfile.TemporaryDirectory(prefix="lambda-zip-verify-") as scratch:
        work = Path(scratch)
        derived = local_build.derive(
            local_build.PackageRequest(
                name=request.name or sbom_name(sbom_path) or archive.stem,
                kind=claims.kind,
                platform=platform,
                output=Path(archive.name),
                sources=request.sources,
                source_root=request.source_root,
                handler=claims.handler,
                requirements=pins,
                lockfile=request.lockfile,
                compile_bytecode=bool(claims.bytecode_compiled_by),
                layers=request.layers,
                # A cache is not a root of trust: every part is made again here.
                cache_dir=work / "parts",
                wheel_cache=request.wheel_cache,
            ),
            work / "derive",
            transitive=False,
        )
        expected = _entries(derived.archive)
        report.distributions = derived.distributions
        compare_entries(report, actual, expected, derived.origins)
        if not report.problems and actual_sha256 != file_sha256(derived.archive)[0]:
            report.problems += [
                f"{archive}: every entry matches, yet the archive is not the canonical one: {line}"
                for line in diff_archives(archive, derived.archive)
            ]
        compiled_by = claims.bytecode_compiled_by
        if compiled_by and derived.outputs.manifest and report.problems:
            local = manifest.LambdaManifest.from_json(
                derived.outputs.manifest.decode(), shown="the derived manifest"
            ).bytecode_compiled_by
            if local != compiled_by:
                report.problems.append(
                    f"note: the archive's .pyc were compiled by CPython {compiled_by}, and this "
                    f"machine's is {local}: .pyc differences may come from that"
                )
        compare_document(report, "manifest", manifest_path, derived.outputs.manifest)
        if sbom_path is not None:
            compare_document(report, "SBOM", sbom_path, derived.outputs.sbom)
    return report


def _entries(archive: Path) -> dict[str, tuple[str, bool]]:
    """Entry name -> (content sha256, executable), read with repack's refusals."""
    found = {}
    for entry in safe_entries(archive):
        found[entry.name] = (hashlib.sha256(entry.content.read()).hexdigest(), entry.executable)
    return found


def _read_manifest(path: Path) -> manifest.LambdaManifest:
    try:
        return manifest.LambdaManifest.from_json(path.read_text(encoding="utf-8"), shown=str(path))
    except (OSError, manifest.ManifestError) as error:
        raise VerifyError(
            f"{path}: cannot read the archive's manifest ({error}); pass --manifest, the .json "
            "that `package` wrote beside the archive"
        ) from None


def _beside(archive: Path, suffix: str) -> Path | None:
    path = archive.with_name(archive.stem + suffix)
    return path if path.exists() else None


def sbom_name(sbom: Path | None) -> str | None:
    """The root component's name: what the package was called (the Pants target address)."""
    if sbom is None:
        return None
    try:
        return json.loads(sbom.read_text(encoding="utf-8"))["metadata"]["component"]["name"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise VerifyError(f"{sbom}: not a CycloneDX SBOM of a package ({error})") from None


def _origin(name: str, origins: dict[str, str | None]) -> tuple[str, str]:
    """(kind of origin, description) of a package path of the derived archive."""
    directory, base = posixpath.split(name)
    if posixpath.basename(directory) == "__pycache__" and base.endswith(".pyc"):
        source = posixpath.join(posixpath.dirname(directory), base.split(".", 1)[0] + ".py")
        owner = origins.get(source)
        return ".pyc", f"bytecode of {owner or 'first-party'} {source}"
    owner = origins.get(name)
    if owner is None:
        return "first-party files", "first-party source"
    if posixpath.basename(directory).endswith(".dist-info") and base in _INSTALLER_FILES:
        return "installer metadata", f"{owner}, written by the installer"
    return "distribution files", owner


def compare_entries(
    report: VerifyReport,
    actual: dict[str, tuple[str, bool]],
    expected: dict[str, tuple[str, bool]],
    origins: dict[str, str | None],
    where: str = "the archive",
) -> None:
    """Each package path (name -> (sha256, executable)) the package holds, against the derived:
    every one unexplained, altered or missing named with its origin, and counted by origin."""
    for name in sorted(set(actual) | set(expected)):
        if name not in expected:
            report.problems.append(
                f"{name}: unexplained; no locked wheel, installer record or source gives it"
            )
            continue
        kind, origin = _origin(name, origins)
        report.counts[kind] = report.counts.get(kind, 0) + 1
        if name not in actual:
            report.problems.append(f"{name} ({origin}): missing from {where}")
            continue
        (got, got_exec), (want, want_exec) = actual[name], expected[name]
        if got != want:
            report.problems.append(
                f"{name} ({origin}): altered; its content has sha256 {got}, and {want} "
                "from the lockfile's wheel and the sources"
            )
        elif got_exec != want_exec:
            report.problems.append(
                f"{name} ({origin}): mode differs (executable {got_exec}, expected {want_exec})"
            )
    for kind in ("distribution files", "installer metadata", ".pyc", "first-party files"):
        report.counts.setdefault(kind, 0)


def compare_document(
    report: VerifyReport, what: str, path: Path, expected: bytes, where: str = "the archive"
) -> None:
    """The manifest or SBOM given, against the derived one, byte for byte."""
    try:
        given = path.read_bytes()
    except OSError as error:
        raise VerifyError(f"{path}: cannot read the {what} ({error.strerror})") from None
    if given != expected:
        detail = differing(given, expected)
        report.problems.append(f"{path}: the {what} does not agree with {where} ({detail})")


def differing(given: bytes, expected: bytes) -> str:
    """What differs between two JSON documents: their top-level fields, or else their bytes."""
    try:
        got, want = json.loads(given), json.loads(expected)
        fields = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    except (ValueError, AttributeError):
        fields = []
    return f"fields {', '.join(fields)} differ" if fields else "its bytes differ"


def verify_all(request: VerifyRequest) -> list[VerifyReport]:
    """The archive, then each of its layers (with the same lockfile, without sources); or the
    image layout, when `request.archive` is one (a folder holding `oci-layout`)."""
    if (request.archive / "oci-layout").is_file():
        # Imported here: verify_image builds on this module.
        from lambda_rules.lambda_zip import verify_image

        return [verify_image.verify_image(request)]
    if request.archive.is_dir():
        raise VerifyError(
            f"{request.archive}: a folder, yet not an OCI image layout (it holds no oci-layout); "
            "give the zip `package` wrote or the layout `image` wrote"
        )
    reports = [verify(request)]
    for _, layer in request.layers:
        reports.append(
            verify(
                VerifyRequest(
                    archive=layer, lockfile=request.lockfile, wheel_cache=request.wheel_cache
                )
            )
        )
    return reports


def describe(reports: Sequence[VerifyReport]) -> tuple[list[str], list[str]]:
    """(summary lines for stdout, problem lines for stderr)."""
    lines = [r.summary() for r in reports if r.ok]
    problems = [f"{r.archive}: {p}" for r in reports for p in r.problems]
    return lines, problems
