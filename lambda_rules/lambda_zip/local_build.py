"""`lambda-zip package`: the Pants rules' steps, in this process, with a local cache of parts.

the lock's wheels for the Lambda platform and their units (`local_wheels`) -> plan the contents
(`contents.plan_contents`, as the rules do) -> per distribution: [compile with the runtime's
CPython] -> compress into a part, or take it from the cache -> merge the parts and zip the
first-party code -> SBOM template from the parts -> manifest and SBOM
(`outputs.package_outputs`). Every option that the target has, and the same
bytes for the same inputs as `pants package`. No Pants imports.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from lambda_rules import (
    actions,
    contents,
    layers,
    locks,
    outputs,
    sandbox_files,
    units,
)
from lambda_rules.errors import LambdaRulesError
from lambda_rules.facts import Kind
from lambda_rules.lambda_zip import dist_writer, local_cache, local_wheels
from lambda_rules.platforms import LambdaPlatform
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
    cache_dir: Path = field(default_factory=local_cache.default_cache_dir)
    # Folders that may already hold locked wheels (checked against the lock like a download).
    find_links: tuple[Path, ...] = ()
    # Where fetched wheels are kept; by default `cache_dir`'s `wheels/`.
    wheel_cache: Path | None = None
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
            f"{request.name}: requirements need --lockfile: a uv.lock (`uv lock`), a pylock.toml "
            "(`uv export --format pylock.toml`, `pip lock`) or the lock `pants generate-lockfiles` "
            "writes"
        )
    output_dir, created = dist_writer.output_directory(request.output)
    try:
        with tempfile.TemporaryDirectory(prefix="lambda-zip-package-") as scratch:
            derived = derive(request, Path(scratch))
            dist_writer.write_outputs(output_dir, derived.archive, derived.outputs)
            return dataclasses.replace(derived, archive=request.output)
    except BaseException:
        # Nothing partial: not even the folders this run made for its outputs.
        for directory in reversed(created):
            try:
                directory.rmdir()
            except OSError:
                break
        raise


@dataclass(frozen=True)
class BuiltParts:
    """Every part of a package, before they become a zip or image layers: the distributions'
    (from the cache or built), then the first-party code's, if any."""

    planned: contents.PackageContents
    parts: tuple[Path, ...]
    first_party: Path | None
    lock: Path
    compressed: int
    damaged: tuple[str, ...]
    compiled_by: str | None
    layer_contents: tuple[layers.LayerContents, ...]
    prefix: str

    @property
    def members(self) -> list[Path]:
        return [*self.parts, *((self.first_party,) if self.first_party else ())]

    def origins(self) -> dict[str, str | None]:
        """Package path (prefix included) -> "name version", or None for a first-party file."""
        found: dict[str, str | None] = {self.prefix + p: None for p in self.planned.first_party}
        for unit in self.planned.units:
            found.update((self.prefix + path, unit.label) for path in unit.paths)
        return found


def build_parts(request: PackageRequest, work: Path, *, transitive: bool = True) -> BuiltParts:
    """Plan the package and make its parts in `work` (a scratch folder) from its inputs alone:
    the lockfile's wheels, the sources and the parts in `request.cache_dir`. `transitive` False
    installs exactly the pinned distributions of `request.requirements` (what `verify` checks)."""
    what = request.name
    lock = request.lockfile or _empty_lock(work)
    cache = local_cache.PartsCache(request.cache_dir)
    wheels = local_wheels.locked_wheels(request, lock, cache, transitive=transitive)
    resolved = local_wheels.resolution(request, wheels, work, cache)
    listed = units.read_listing(resolved.listing)
    sources = _collect_sources(what, request.sources, request.source_root)
    layer_contents = _layer_contents(request.layers)
    planned = contents.plan_contents(
        what=what,
        platform=request.platform,
        sources={path: file_sha256(source)[0] for path, source in sources.items()},
        distributions=units.split_of(listed),
        metadata=resolved.metadata,
        requirements=request.requirements,
        exclude=request.exclude,
        layer_contents=layer_contents,
    )
    if request.handler:
        _check_handler(what, request.handler, planned, sources)
    holds_files = bool(planned.units or planned.first_party)
    contents.check_not_empty(what, request.kind, holds_files, fix="give it sources")
    prefix = actions.package_prefix(request.kind)
    compiler = _compiler(what, request) if request.compile_bytecode else None
    parts = _parts(request, wheels, _listed(listed, planned), work, cache, prefix, compiler)
    first_party = {path: sources[path] for path in planned.first_party}
    return BuiltParts(
        planned=planned,
        parts=tuple(part.cached.path for part in parts),
        first_party=_first_party_part(work, prefix, first_party, request.level, compiler)
        if first_party
        else None,
        lock=lock,
        compressed=sum(1 for part in parts if part.built),
        damaged=tuple(cache.damaged),
        compiled_by=compiler.version if compiler is not None else None,
        layer_contents=layer_contents,
        prefix=prefix,
    )


def _layer_contents(given: Sequence[tuple[str, Path]]) -> tuple[layers.LayerContents, ...]:
    if not given:
        return ()
    from lambda_rules.lambda_zip import layer_reader  # reads zips and manifests: only for layers

    return tuple(layer_reader.layer_contents(name, path) for name, path in given)


def sbom_template(request: PackageRequest, built: BuiltParts) -> str:
    """The SBOM of the package's distributions, the package's digest and name left to fill in;
    kept in the cache by the parts it describes (each part's file is named by its key)."""
    cache = local_cache.PartsCache(request.cache_dir)
    key = local_cache.sbom_template_key(
        parts=[part.stem for part in built.parts],
        lock=file_sha256(built.lock)[0],
        runtime=request.platform.runtime.name,
        architecture=request.platform.architecture,
        kind=request.kind.value,
        layers=[[name, file_sha256(path)[0]] for name, path in request.layers],
    )
    cached = cache.get_document(local_cache.SBOM_TEMPLATES, key)
    if cached is not None:
        return cached.decode("utf-8")
    from lambda_rules import sbom  # needs cyclonedx-python-lib, a dependency of `package` only

    template = sbom.generate_sbom_template(
        list(built.parts),
        built.lock,
        platform=request.platform,
        kind=request.kind,
        layers=[sbom.layer_reference_from_archive(name, path) for name, path in request.layers],
        source_date_epoch=None,
    )
    cache.put_document(local_cache.SBOM_TEMPLATES, key, template.encode("utf-8"))
    return template


def derive(request: PackageRequest, work: Path, *, transitive: bool = True) -> Derivation:
    """Build the package in `work` (see `build_parts`): its parts merged into one zip, and the
    manifest and SBOM beside it."""
    built = build_parts(request, work, transitive=transitive)
    merged = work / "merged.zip"
    summary = merge_zips(built.members, merged, durable=False)  # a scratch file, copied out
    written = outputs.package_outputs(
        what=request.name,
        kind=request.kind,
        platform=request.platform,
        output_path=request.output.name,
        summary=summary,
        handler=request.handler,
        distributions=built.planned.distributions,
        sbom_template=sbom_template(request, built),
        layer_contents=built.layer_contents,
        bytecode_compiled_by=built.compiled_by,
    )
    return Derivation(
        archive=merged,
        outputs=written,
        zipped_size=summary.zipped_size,
        distributions=len(built.parts),
        compressed=built.compressed,
        damaged=built.damaged,
        warnings=(*built.planned.warnings, *written.warnings),
        origins=built.origins(),
    )


def _first_party_part(
    work: Path, prefix: str, files: dict[str, Path], level: int, compiler: _Compiler | None
) -> Path:
    """The first-party files zipped (and compiled, where a source that does not compile is an
    error) into a part of their own, made every run."""
    tree = work / "tree"
    _stage(tree, prefix, files)
    if compiler is not None:
        _compile([tree], compiler, third_party=False)
    part = work / "tree.zip"
    _zip_part(tree, part, level, compiler)
    return part


def _listed(
    listed: Sequence[units.ListedUnit], planned: contents.PackageContents
) -> list[units.ListedUnit]:
    """The listed units the plan keeps, in the plan's order."""
    by_plan = {unit.plan: unit for unit in listed}
    return [by_plan[plan] for plan in planned.units]


@dataclass(frozen=True)
class _Part:
    cached: local_cache.CachedPart
    built: bool


def _parts(
    request: PackageRequest,
    wheels: Sequence[locks.LockedWheel],
    wanted: Sequence[units.ListedUnit],
    work: Path,
    cache: local_cache.PartsCache,
    prefix: str,
    compiler: _Compiler | None,
) -> list[_Part]:
    """Each wanted unit's part, from the cache or built as the Pants rules build it: repacked
    from its stored archive, or with bytecode unpacked, compiled and zipped (the units missing
    are compiled in one process: a process start per distribution would cost more)."""
    settings: dict[str, object] = {"level": request.level, "prefix": prefix}
    if compiler is not None:
        settings.update(python=compiler.version, load=compiler.prefix, tag=compiler.cache_tag)
    tool = local_cache.tool_fingerprint()
    keys = [local_cache.PartKey.of(unit.sha256, tool=tool, settings=settings) for unit in wanted]
    found = [cache.get(key) for key in keys]
    missing = [index for index, cached in enumerate(found) if cached is None]
    if not missing:
        return [_Part(cached, False) for cached in found if cached is not None]
    built = _build(request, wheels, {i: wanted[i] for i in missing}, work, prefix, compiler)
    parts = []
    for index, cached in enumerate(found):
        if cached is None:
            cached = cache.put(keys[index], built[index], compiler.version if compiler else None)
        parts.append(_Part(cached, index in missing))
    return parts


def _build(
    request: PackageRequest,
    wheels: Sequence[locks.LockedWheel],
    missing: dict[int, units.ListedUnit],
    work: Path,
    prefix: str,
    compiler: _Compiler | None,
) -> dict[int, Path]:
    """The parts of the units the cache lacks, built from the locked wheels. (Imported here: a
    warm run builds none, so it loads neither the repacker nor the general ZIP reader.)"""
    from lambda_rules.wheel_units import early_part
    from lambda_rules.zipper import pieces
    from lambda_rules.zipper.repack import repack_zip

    out = local_wheels.write_units(request, wheels, work)
    written = units.read_listing((out / units.UNITS_JSON).read_bytes())
    index_of = {unit.sha256: index for index, unit in enumerate(written)}
    archives = {i: out / f"{index_of[u.sha256]}.zip{pieces.SUFFIX}" for i, u in missing.items()}
    staged = {i: work / "staged" / str(i) for i in missing}
    if compiler is not None:
        unpack = [(archives[i], staged[i] / prefix) for i in missing]
        _compile(list(staged.values()), compiler, third_party=True, unpack=unpack)
    built: dict[int, Path] = {}
    for i, unit in missing.items():
        early = early_part(work / local_wheels.EARLY_PARTS, unit.sha256)
        if early.exists():  # zipped as the wheel was laid out
            built[i] = early
            continue
        part = built[i] = work / "parts" / f"{i}.zip"
        part.parent.mkdir(parents=True, exist_ok=True)
        if compiler is None:
            repack_zip(archives[i], part, level=request.level, prefix=prefix, durable=False)
        else:
            _zip_part(staged[i], part, request.level, compiler)
    return built


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
    # Imported here, as in `_compile`: most packages compile nothing, and a warm run's time is
    # mostly imports.
    import subprocess

    from lambda_rules.scripts import interpreters

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
    prefix = actions.load_root(request.kind)
    return _Compiler(python, version, runtime.cache_tag, prefix)


def _zip_part(staged: Path, out: Path, level: int, compiler: _Compiler | None) -> None:
    """Zip one staged unit (with its .pyc when compiled), as the rules' compress step does, into
    the scratch folder (not fsynced: the cache keeps its own durable copy)."""
    includes = actions.bytecode_includes(compiler.cache_tag) if compiler is not None else ()
    build_zip(
        staged, out, level=level, includes=includes, max_workers=os.cpu_count(), durable=False
    )


def _compile(
    trees: Sequence[Path],
    compiler: _Compiler,
    *,
    third_party: bool,
    unpack: Sequence[tuple[Path, Path]] = (),
) -> None:
    """Compile each tree as a root of its own in one run of the bytecode compiler, the command
    the Pants rule runs (`actions.compile_argv`), after unpacking each (archive, directory)."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="lambda-zip-compiler-") as scripts:
        for path, content in sandbox_files.BYTECODE_COMPILER.read().items():
            (Path(scripts) / path).parent.mkdir(parents=True, exist_ok=True)
            (Path(scripts) / path).write_bytes(content)
        argv = actions.compile_argv(
            str(compiler.python),
            scripts,
            roots=[str(tree) for tree in trees],
            load_root=compiler.prefix,
            workers=str(os.cpu_count() or 1),
            third_party=third_party,
            unpack=[(str(archive), str(directory)) for archive, directory in unpack],
        )
        result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        detail = " ".join(result.stderr.split())
        raise PackageError(f"cannot compile bytecode: {detail}; fix the source or drop it")
