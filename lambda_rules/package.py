"""`lambda-zip package`: the Pants rules' steps, in this process, with a local cache of parts.

resolve (pex, for the Lambda platform) -> plan the contents (`contents.plan_contents`, as the rules
do) -> per distribution: [compile with the runtime's CPython] -> compress into a part, or take it
from the cache -> merge the parts and zip the first-party code -> SBOM template from the parts ->
manifest and SBOM (`outputs.package_outputs`). Every option that the target has, and the same
bytes for the same inputs as `pants package`. No Pants imports.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from lambda_rules import (
    contents,
    facts,
    layer_archive,
    lockfile,
    outputs,
    parts_cache,
    resolve,
    sandbox_files,
    units,
)
from lambda_rules.errors import LambdaRulesError
from lambda_rules.facts import Kind
from lambda_rules.platforms import LambdaPlatform
from lambda_rules.scripts import interpreters
from lambda_rules.zipper.build import build_zip
from lambda_rules.zipper.compress import DEFAULT_LEVEL
from lambda_rules.zipper.merge import merge_zips
from lambda_rules.zipper.summary import file_sha256


class PackageError(LambdaRulesError):
    """The inputs cannot give a deployment package; the message says why and what to do."""


@dataclass(frozen=True)
class PackageRequest:
    name: str
    kind: Kind
    platform: LambdaPlatform
    output: Path
    sources: tuple[Path, ...] = ()
    source_root: Path = Path(".")
    handler: str | None = None
    requirements: tuple[str, ...] = ()
    lockfile: Path | None = None
    compile_bytecode: bool = False
    exclude: tuple[str, ...] = ()
    layers: tuple[tuple[str, Path], ...] = ()
    cache_dir: Path = field(default_factory=parts_cache.default_cache_dir)
    level: int = DEFAULT_LEVEL


@dataclass(frozen=True)
class Derivation:
    """A package built in a scratch folder: the archive, what goes beside it, and where each of
    its files came from."""

    archive: Path
    outputs: outputs.PackageOutputs
    zipped_size: int
    distributions: int
    compressed: int
    damaged: tuple[str, ...]
    warnings: tuple[str, ...]
    # Package path (prefix included) -> its origin: a distribution "name version", or None for a
    # first-party file.
    origins: dict[str, str | None]


@dataclass(frozen=True)
class _Compiler:
    python: Path
    version: str
    cache_tag: str
    prefix: str


def package(request: PackageRequest) -> Derivation:
    """Build the package and write the zip, its content-addressed copy, manifest and SBOM beside
    `request.output`, all or nothing; what was written."""
    if request.kind is Kind.FUNCTION and not request.handler:
        raise PackageError(f"{request.name}: a function needs --handler (module.function)")
    if request.requirements and request.lockfile is None:
        raise PackageError(
            f"{request.name}: requirements need --lockfile; create one with `pex3 lock create "
            "--style universal --pip-version latest -o lock.json REQUIREMENT...` (or use the "
            "lockfile `pants generate-lockfiles` writes)"
        )
    output_dir, created = _output_directory(request.output)
    try:
        with tempfile.TemporaryDirectory(prefix="lambda-zip-package-") as scratch:
            derived = derive(request, Path(scratch))
            _write_outputs(output_dir, derived.archive, derived.outputs)
            return dataclasses.replace(derived, archive=request.output)
    except BaseException:
        # Nothing partial: not even the folders this run made for its outputs.
        for directory in reversed(created):
            try:
                directory.rmdir()
            except OSError:
                break
        raise


def derive(request: PackageRequest, work: Path, *, transitive: bool = True) -> Derivation:
    """Build the package in `work` (a scratch folder) from its inputs alone: the lockfile's
    wheels, the sources and the parts in `request.cache_dir`. `transitive` False installs exactly
    the pinned distributions of `request.requirements` (what `verify` checks against)."""
    platform, what = request.platform, request.name
    site_packages = work / "site-packages"
    site_packages.mkdir(parents=True)
    lock = request.lockfile or _empty_lock(work)
    cache = parts_cache.PartsCache(request.cache_dir)
    resolved = _resolution(request, lock, site_packages, cache, transitive=transitive)
    sources = _collect_sources(what, request.sources, request.source_root)
    layer_contents = [layer_archive.layer_contents(name, path) for name, path in request.layers]
    planned = contents.plan_contents(
        what=what,
        platform=platform,
        sources={path: file_sha256(source)[0] for path, source in sources.items()},
        distributions=units.split_distributions(sorted(resolved.files), resolved.records),
        metadata=resolved.metadata,
        requirements=request.requirements,
        exclude=request.exclude,
        layer_contents=layer_contents,
    )
    if request.handler:
        _check_handler(what, request.handler, planned, sources)
    if not planned.units and not planned.first_party:
        raise PackageError(f"{what}: the {request.kind.value} would hold no files; give it sources")

    prefix = f"{facts.LAYER_PYTHON_DIR}/" if request.kind is Kind.LAYER else ""
    compiler = _compiler(what, request) if request.compile_bytecode else None
    tool = parts_cache.tool_fingerprint()
    settings: dict[str, object] = {"level": request.level}
    if compiler is not None:
        settings.update(python=compiler.version, prefix=compiler.prefix, tag=compiler.cache_tag)
    keys = [
        parts_cache.PartKey.of(
            [(prefix + path, *resolved.files[path]) for path in unit.paths],
            tool=tool,
            settings=settings,
        )
        for unit in planned.units
    ]
    found = [cache.get(key) for key in keys]
    missing = [index for index, cached in enumerate(found) if cached is None]
    if missing and not any(site_packages.iterdir()):
        # The parts were wanted from a cached resolve, and some are gone: the files are needed.
        _resolve(request, lock, site_packages, transitive=transitive)
    # What is missing is staged, compiled in one process (a process start per distribution
    # would cost more than many compile) and zipped here.
    staged = {index: work / "units" / str(index) for index in missing}
    for index in missing:
        files = {path: site_packages / path for path in planned.units[index].paths}
        _stage(staged[index], prefix, files)
    if compiler is not None and missing:
        _compile(list(staged.values()), compiler, skip_invalid=True)
    parts = []
    for index, cached in enumerate(found):
        if cached is None:
            built = staged[index].with_suffix(".zip")
            _zip_part(staged[index], built, request.level, compiler)
            cached = cache.put(keys[index], built, compiler.version if compiler else None)
        parts.append(cached)
    compressed = len(missing)

    merged = work / "merged.zip"
    tree_compiled_by = None
    members = [part.path for part in parts]
    if planned.first_party:
        tree = work / "tree"
        _stage(tree, prefix, {path: sources[path] for path in planned.first_party})
        tree_part = work / "tree.zip"
        if compiler is not None:
            _compile([tree], compiler, skip_invalid=False)
            tree_compiled_by = compiler.version
        _zip_part(tree, tree_part, request.level, compiler)
        members.append(tree_part)
    summary = merge_zips(members, merged)
    from lambda_rules import sbom  # needs cyclonedx-python-lib, a dependency of `package` only

    template = sbom.generate_sbom_template(
        [part.path for part in parts],
        lock,
        platform=platform,
        kind=request.kind,
        layers=[sbom.layer_reference_from_archive(name, path) for name, path in request.layers],
        source_date_epoch=None,
    )
    written = outputs.package_outputs(
        what=what,
        kind=request.kind,
        platform=platform,
        output_path=request.output.name,
        summary=summary,
        handler=request.handler,
        distributions=planned.distributions,
        sbom_template=template,
        layer_contents=layer_contents,
        bytecode_compiled_by=next(
            (c for c in (*(p.compiled_by for p in parts), tree_compiled_by) if c), None
        ),
    )
    origins: dict[str, str | None] = {prefix + path: None for path in planned.first_party}
    for unit in planned.units:
        origins.update((prefix + path, unit.label) for path in unit.paths)
    return Derivation(
        archive=merged,
        outputs=written,
        zipped_size=summary.zipped_size,
        distributions=len(parts),
        compressed=compressed,
        damaged=tuple(cache.damaged),
        warnings=(*planned.warnings, *written.warnings),
        origins=origins,
    )


def _resolve(request: PackageRequest, lock: Path, site_packages: Path, *, transitive: bool) -> None:
    resolve.resolve_distributions(
        what=request.name,
        platform=request.platform,
        requirements=request.requirements,
        lock=lock,
        dest=site_packages,
        transitive=transitive,
    )


def _resolution(
    request: PackageRequest,
    lock: Path,
    site_packages: Path,
    cache: parts_cache.PartsCache,
    *,
    transitive: bool,
) -> parts_cache.Resolution:
    """What the requirements resolve to: from the cache when this lockfile, these requirements
    and this platform were resolved before (no pex run, no files), else from pex."""
    if not request.requirements:
        return parts_cache.Resolution({}, {}, {})
    key = parts_cache.resolution_key(
        pex=resolve.PEX_REQUIREMENT,
        lock=hashlib.sha256(lockfile.lock_json(lock).encode()).hexdigest(),
        requirements=list(request.requirements),
        platform=request.platform.complete_platform_json(),
        transitive=transitive,
    )
    cached = cache.get_resolution(key)
    if cached is not None:
        return cached
    _resolve(request, lock, site_packages, transitive=transitive)
    paths = _files_under(site_packages)
    resolved = parts_cache.Resolution(
        files={
            path: (
                file_sha256(site_packages / path)[0],
                bool(os.stat(site_packages / path).st_mode & 0o111),
            )
            for path in paths
        },
        records=_read_matching(site_packages, paths, ".dist-info/RECORD"),
        metadata=_read_matching(site_packages, paths, ".dist-info/METADATA"),
    )
    cache.put_resolution(key, resolved)
    return resolved


def _output_directory(output: Path) -> tuple[Path, list[Path]]:
    """The folder the outputs go to, checked writable before any work, and the folders made for
    it (outermost first)."""
    if output.suffix != ".zip":
        raise PackageError(f"{output}: the output must be a .zip path, e.g. dist/fn/lambda.zip")
    directory = output.parent
    created = [d for d in (directory, *directory.parents) if not d.exists()][::-1]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=directory, prefix=".lambda-zip-probe-")
        probe.close()
    except OSError as error:
        for made in reversed(created):
            if made.is_dir():
                made.rmdir()
        raise PackageError(
            f"{directory}: cannot write the package there ({error.strerror}); choose another "
            "--output or fix the folder's permissions"
        ) from None
    return directory, created


def _empty_lock(work: Path) -> Path:
    """A package without requirements still gets an SBOM; it needs a lockfile of nothing."""
    path = work / "empty.lock"
    path.write_text('{"locked_resolves": []}\n', encoding="utf-8")
    return path


def _collect_sources(what: str, given: Sequence[Path], root: Path) -> dict[str, Path]:
    """Package path (source root stripped) -> file, for every file given or under a folder given.
    `__pycache__` and `.pyc` are left out, as the rules leave them out."""
    found: dict[str, Path] = {}
    root = root.resolve()
    for source in given:
        if not source.exists():
            raise PackageError(f"{what}: source {source} does not exist")
        for path in _walk(source):
            try:
                relative = path.resolve().relative_to(root).as_posix()
            except ValueError:
                raise PackageError(
                    f"{what}: source {path} is not under the source root {root}; pass "
                    "--source-root, the folder that the package's paths start from"
                ) from None
            found[relative] = path
    return dict(sorted(found.items()))


def _walk(source: Path) -> Iterator[Path]:
    if source.is_file():
        yield source
        return
    for directory, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if not name.endswith((".pyc", ".pyo")):
                yield Path(directory, name)


def _files_under(root: Path) -> list[str]:
    return sorted(
        Path(directory, name).relative_to(root).as_posix()
        for directory, _, filenames in os.walk(root)
        for name in filenames
    )


def _read_matching(root: Path, paths: Sequence[str], suffix: str) -> dict[str, bytes]:
    """The `*.dist-info/RECORD` (or METADATA) files at the top of the flat layout."""
    return {
        path: (root / path).read_bytes()
        for path in paths
        if path.endswith(suffix) and path.count("/") == 1
    }


def _check_handler(
    what: str, handler: str, planned: contents.PackageContents, sources: dict[str, Path]
) -> None:
    module, _, function = handler.rpartition(".")
    if not module or not function:
        raise PackageError(
            f"{what}: --handler {handler!r} is not module.function, e.g. app.handler"
        )
    module_file = contents.handler_module_file(
        what, handler, module, planned.visible_paths, fix="Check --handler and the sources."
    )
    source = sources.get(module_file)
    contents.check_handler_defines(
        what,
        handler,
        function,
        module_file,
        source.read_bytes() if source is not None else None,
        fix="Fix --handler or define the function.",
    )


def _stage(directory: Path, prefix: str, files: dict[str, Path]) -> None:
    """Copy `files` to `directory/prefix/path`, keeping only the exec bit (as Pants' digests)."""
    for path, source in files.items():
        target = directory / prefix / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        os.chmod(target, 0o755 if os.stat(source).st_mode & 0o111 else 0o644)


def _compiler(what: str, request: PackageRequest) -> _Compiler:
    runtime = request.platform.runtime
    try:
        python = interpreters.find_interpreter(runtime)
    except interpreters.InterpreterNotFoundError as error:
        raise PackageError(f"{what}: --compile-bytecode: {error}") from None
    version = subprocess.run(
        [str(python), "-I", "-S", "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    prefix = facts.LAYER_ROOT if request.kind is Kind.LAYER else facts.TASK_ROOT
    return _Compiler(python, version, runtime.cache_tag, prefix)


def _zip_part(staged: Path, out: Path, level: int, compiler: _Compiler | None) -> None:
    """Zip one staged unit (with its .pyc when compiled), as the rules' compress step does."""
    includes = [f"*.{compiler.cache_tag}.pyc"] if compiler is not None else []
    build_zip(staged, out, level=level, includes=includes, max_workers=os.cpu_count())


def _compile(trees: Sequence[Path], compiler: _Compiler, *, skip_invalid: bool) -> None:
    """Compile each tree as a root of its own in one run of the bytecode compiler, from its
    shipped files, as the Pants rule runs it. A third-party source that does not compile is
    skipped (`skip_invalid`), as pip does; a first-party one is an error."""
    with tempfile.TemporaryDirectory(prefix="lambda-zip-compiler-") as scripts:
        for path, content in sandbox_files.BYTECODE_COMPILER.read().items():
            (Path(scripts) / path).parent.mkdir(parents=True, exist_ok=True)
            (Path(scripts) / path).write_bytes(content)
        program = sandbox_files.entry_program(sandbox_files.BYTECODE_COMPILER_MODULE, (scripts,))
        result = subprocess.run(
            [
                str(compiler.python),
                "-I",
                "-B",
                "-c",
                program,
                "compile",
                *(arg for tree in trees for arg in ("--root", str(tree))),
                "--prefix",
                compiler.prefix,
                "--workers",
                str(os.cpu_count() or 1),
                *(("--on-invalid", "skip") if skip_invalid else ()),
            ],
            capture_output=True,
            text=True,
        )
    if result.returncode != 0:
        detail = " ".join(result.stderr.split())
        raise PackageError(f"cannot compile bytecode: {detail}; fix the source or drop it")


def _write_outputs(directory: Path, merged: Path, written: outputs.PackageOutputs) -> None:
    """Everything into a scratch folder beside the outputs, then renamed into place with
    interrupts held back: a run leaves the previous outputs or the new ones, never a mix."""
    paths = written.paths
    with tempfile.TemporaryDirectory(prefix=".lambda-zip-", dir=directory) as scratch:
        staged = Path(scratch)
        shutil.copyfile(merged, staged / "archive")
        os.chmod(staged / "archive", 0o644)
        for name, data in (("manifest", written.manifest), ("sbom", written.sbom)):
            (staged / name).write_bytes(data)
            os.chmod(staged / name, 0o644)
        cas_directory = directory / paths.content_addressed_directory
        blocked = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            # Like `pants package`, the content-addressed folder holds this build's copy only.
            shutil.rmtree(cas_directory, ignore_errors=True)
            cas_directory.mkdir(parents=True)
            shutil.copyfile(staged / "archive", directory / paths.content_addressed)
            os.chmod(directory / paths.content_addressed, 0o644)
            os.replace(staged / "sbom", directory / paths.sbom)
            os.replace(staged / "manifest", directory / paths.manifest)
            os.replace(staged / "archive", directory / paths.archive)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
