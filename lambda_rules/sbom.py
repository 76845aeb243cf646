"""A reproducible CycloneDX SBOM of a built Lambda archive (no Pants imports).

What is listed comes from the archive itself (its `*.dist-info` directories), not from what the
build meant to bundle, so excluded distributions never appear. The lockfile only supplies the
SHA-256 of the wheel each distribution was installed from. Nothing depends on the clock, the
host or randomness: the serial number is a UUID v5 of the archive's digest, the timestamp is
SOURCE_DATE_EPOCH or absent, bom-refs are purls, and the library sorts everything it writes.

`generate_sbom_template` reads the distributions from any archives or directories holding them
(the parts an archive is merged from, or the staged distributions) and leaves the archive's digest
and the target's name to `sbom_identity.complete_sbom`: one template serves every function on the
same distributions.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import functools
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, Iterable, Mapping, Sequence

from cyclonedx.builder.this import this_component
from cyclonedx.factory.license import LicenseFactory
from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import DisjunctiveLicense, License, LicenseAcknowledgement
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL
from packaging.markers import UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from lambda_rules.facts import LAYER_PYTHON_DIR, LAYER_SITE_PACKAGES, Kind
from lambda_rules.fetch import shown_url
from lambda_rules.locks import LockedWheel
from lambda_rules.platforms import LambdaPlatform
from lambda_rules.sbom_identity import (
    PLACEHOLDER_NAME,
    PLACEHOLDER_SHA256,
    SHA256_HEX,
    SbomError,
    serial_number,
)
from lambda_rules.wheel_origins import locked_wheels_by_version, matching_wheel, wheel_tags
from lambda_rules.zipper.entry_data import read_entry_data
from lambda_rules.zipper.reader import ArchiveEntry, read_archive
from lambda_rules.zipper.summary import file_sha256

# A function is the application; a layer is a bundle of libraries that functions import.
_COMPONENT_TYPES = {Kind.FUNCTION: ComponentType.APPLICATION, Kind.LAYER: ComponentType.LIBRARY}
_PROPERTY_PREFIX = "lambda_rules:"
# Where Lambda imports from: the function's root, and a layer's python/ and
# python/lib/python3.X/site-packages/ (any X: a layer may serve several runtimes).
_SITE_PACKAGES = re.sub(r"\\\{(major|minor)\\\}", r"\\d+", re.escape(LAYER_SITE_PACKAGES))
_LAYER_DIRS = rf"{re.escape(LAYER_PYTHON_DIR)}/(?:{_SITE_PACKAGES}/)?"
_DIST_INFO_FILE = re.compile(
    rf"^(?P<dir>(?:{_LAYER_DIRS})?[^/]+\.dist-info)/(?P<file>METADATA|WHEEL)$"
)
_MAX_METADATA_BYTES = 16 * 1024 * 1024
# A License field longer than this, or spanning lines, is the license's text, not its name.
_MAX_LICENSE_NAME = 100


@dataclass(frozen=True)
class LayerReference:
    """A layer the function runs with: its SBOM is the one whose serial derives from `sha256`.

    `provides` (canonical distribution names) lets a bundled distribution's requirement on
    something the layer bundles become an edge to the layer instead of being dropped.
    """

    name: str
    sha256: str
    provides: frozenset = field(default_factory=frozenset)


@dataclass(frozen=True)
class BundledDistribution:
    """One `*.dist-info` in the archive, with the lockfile artifact it was installed from."""

    name: str  # canonical (PEP 503)
    version: str
    metadata: email.message.Message
    wheel_tags: frozenset
    wheel_filename: str
    wheel_url: str
    wheel_sha256: str

    @property
    def purl(self) -> str:
        return PackageURL(type="pypi", name=self.name, version=self.version).to_string()


def layer_reference_from_archive(name: str, path: str | Path) -> LayerReference:
    """A reference to a built layer, with the distributions it bundles read from the archive."""
    sha256_hex, _ = file_sha256(path)
    provides = frozenset(
        canonicalize_name(_metadata_name(m)) for m, _ in _dist_infos(path).values()
    )
    return LayerReference(name, sha256_hex, provides)


def generate_sbom(
    archive: str | Path,
    lockfile: str | Path,
    *,
    name: str,
    platform: LambdaPlatform,
    kind: Kind = Kind.FUNCTION,
    layers: Sequence[LayerReference] = (),
    source_date_epoch: int | None = None,
) -> str:
    """The CycloneDX 1.6 JSON document for `archive`, ending in a newline.

    `name` is the root component's name (the target address); `platform` is the runtime and
    architecture whose marker environment decides which `Requires-Dist` lines apply.
    """
    if not name:
        raise SbomError("the SBOM's root component needs a name (the target address)")
    return _sbom_json(
        [archive],
        lockfile,
        name=name,
        archive_sha256=file_sha256(archive)[0],
        platform=platform,
        kind=kind,
        layers=layers,
        source_date_epoch=source_date_epoch,
    )


def generate_sbom_template(
    archives: Sequence[str | Path],
    lockfile: str | Path,
    *,
    platform: LambdaPlatform,
    kind: Kind = Kind.FUNCTION,
    layers: Sequence[LayerReference] = (),
    source_date_epoch: int | None = None,
) -> str:
    """`generate_sbom` of the archive that `archives` (archives, or directories laid out as one)
    merge into, with PLACEHOLDER_SHA256 for its digest and PLACEHOLDER_NAME for its name:
    `sbom_identity.complete_sbom` fills them in."""
    return _sbom_json(
        archives,
        lockfile,
        name=PLACEHOLDER_NAME,
        archive_sha256=PLACEHOLDER_SHA256,
        platform=platform,
        kind=kind,
        layers=layers,
        source_date_epoch=source_date_epoch,
    )


def _sbom_json(
    archives: Sequence[str | Path],
    lockfile: str | Path,
    *,
    name: str,
    archive_sha256: str,
    platform: LambdaPlatform,
    kind: Kind,
    layers: Sequence[LayerReference],
    source_date_epoch: int | None,
) -> str:
    layers = _checked_layers(layers, name)
    distributions = bundled_distributions(archives, locked_wheels_by_version(lockfile))

    root = Component(
        type=_COMPONENT_TYPES[kind],
        name=name,
        version=archive_sha256,
        bom_ref=name,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=archive_sha256)],
        properties=[
            Property(name=f"{_PROPERTY_PREFIX}kind", value=kind.value),
            Property(name=f"{_PROPERTY_PREFIX}runtime", value=platform.runtime.name),
            Property(name=f"{_PROPERTY_PREFIX}architecture", value=platform.architecture),
        ],
    )
    bom = Bom(serial_number=serial_number(archive_sha256))
    bom.metadata.component = root
    bom.metadata.tools.components.add(this_component())
    # The library stamps "now" when given no timestamp: reproducible is SOURCE_DATE_EPOCH or none.
    bom.metadata.timestamp = (
        None  # type: ignore[assignment]  # the library's setter takes None, its stub does not
        if source_date_epoch is None
        else datetime.fromtimestamp(source_date_epoch, tz=timezone.utc)
    )

    components = {d.name: _distribution_component(d) for d in distributions}
    layer_components = {layer.name: _layer_component(layer) for layer in layers}
    for component in [*components.values(), *layer_components.values()]:
        bom.components.add(component)

    environment = {**platform.marker_environment(), "extra": ""}
    providers = {
        dist: layer.name
        for layer in reversed(layers)
        for dist in layer.provides
        if dist not in components
    }
    required: dict[str, set[str]] = {}
    for distribution in distributions:
        targets = set()
        for requirement in _requirements(distribution, environment):
            if requirement in components and requirement != distribution.name:
                targets.add(requirement)
            elif requirement in providers:
                targets.add(f"layer:{providers[requirement]}")
        required[distribution.name] = targets
        bom.register_dependency(
            components[distribution.name],
            [_target(t, components, layer_components) for t in sorted(targets)],
        )
    for layer_component in layer_components.values():
        bom.register_dependency(layer_component, [])
    direct = [*_graph_tops(required), *(f"layer:{layer.name}" for layer in layers)]
    bom.register_dependency(root, [_target(t, components, layer_components) for t in direct])

    document = json.loads(JsonV1Dot6(bom).output_as_string())
    # The library appends these three; a reader looks for them first.
    head = {key: document.pop(key) for key in ("$schema", "bomFormat", "specVersion")}
    return json.dumps({**head, **document}, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def bundled_distributions(
    archives: Sequence[str | Path],
    artifacts: Mapping[tuple[str, Version], Sequence[LockedWheel]],
) -> list[BundledDistribution]:
    """Every distribution installed in `archives`, sorted by name, matched to its locked wheel."""
    result = {}
    for archive in archives:
        for directory, (metadata, wheel) in sorted(_dist_infos(archive).items()):
            name = canonicalize_name(_metadata_name(metadata))
            version = metadata.get("Version", "").strip()
            if name in result:
                raise SbomError(
                    f"{archive}: {directory} installs {name} a second time; an archive must hold "
                    "one copy of each distribution"
                )
            if wheel is None:
                raise SbomError(
                    f"{archive}: {directory} has no WHEEL file, so its wheel cannot be identified"
                )
            tags = wheel_tags(wheel)
            artifact = matching_wheel(archive, name, version, tags, artifacts)
            result[name] = BundledDistribution(
                name, version, metadata, tags, artifact.filename, artifact.url, artifact.sha256
            )
    return [result[n] for n in sorted(result)]


def _checked_layers(layers: Sequence[LayerReference], root: str) -> list[LayerReference]:
    seen = {root}
    for layer in layers:
        if not layer.name or layer.name in seen:
            raise SbomError(
                f"layer names must be non-empty and differ from each other and from the SBOM's "
                f"name, got {layer.name!r}"
            )
        if not SHA256_HEX.match(layer.sha256):
            raise SbomError(f"layer {layer.name}: {layer.sha256!r} is not a lowercase hex SHA-256")
        seen.add(layer.name)
    return sorted(layers, key=lambda layer: layer.name)


def _dist_infos(source: str | Path) -> dict[str, tuple[email.message.Message, bytes | None]]:
    """`*.dist-info` directory -> (parsed METADATA, WHEEL bytes) of an archive, read with the
    strict reader, or of a directory laid out as an archive would be (staged distributions)."""
    readers = (
        _directory_readers(Path(source)) if Path(source).is_dir() else _archive_readers(source)
    )
    result = {}
    for directory, read in readers.items():
        if "METADATA" not in read:
            raise SbomError(f"{source}: {directory} has no METADATA file")
        metadata = _parse_metadata(source, directory, read["METADATA"]())
        result[directory] = (metadata, read["WHEEL"]() if "WHEEL" in read else None)
    return result


# `*.dist-info` directory -> file name (METADATA, WHEEL) -> what reads that file's bytes.
_Readers = Dict[str, Dict[str, Callable[[], bytes]]]


def _archive_readers(archive: str | Path) -> _Readers:
    parsed = read_archive(archive)
    readers: _Readers = {}
    for entry in parsed.entries:
        match = _DIST_INFO_FILE.match(entry.name)
        if match and not entry.is_directory:
            read = functools.partial(_read_entry, parsed.path, entry)
            readers.setdefault(match["dir"], {})[match["file"]] = read
    return readers


def _directory_readers(root: Path) -> _Readers:
    readers: _Readers = {}
    for path in sorted(root.glob("**/*.dist-info/*")):
        match = _DIST_INFO_FILE.match(path.relative_to(root).as_posix())
        if match and path.is_file():
            readers.setdefault(match["dir"], {})[match["file"]] = functools.partial(
                _read_file, path
            )
    return readers


def _read_entry(archive: str, entry: ArchiveEntry) -> bytes:
    _check_metadata_size(f"{archive}: {entry.name}", entry.uncompressed_size)
    with open(archive, "rb") as f:
        return read_entry_data(f, archive, entry)


def _read_file(path: Path) -> bytes:
    _check_metadata_size(str(path), path.stat().st_size)
    return path.read_bytes()


def _check_metadata_size(what: str, size: int) -> None:
    if size > _MAX_METADATA_BYTES:
        raise SbomError(f"{what} declares {size} bytes, too large for a metadata file")


def _parse_metadata(archive: str | Path, directory: str, data: bytes) -> email.message.Message:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SbomError(f"{archive}: {directory}/METADATA is not UTF-8") from None
    metadata = email.parser.Parser(policy=email.policy.compat32).parsestr(text, headersonly=True)
    if not metadata.get("Name") or not metadata.get("Version"):
        raise SbomError(f"{archive}: {directory}/METADATA lacks a Name or Version field")
    return metadata


def _metadata_name(metadata: email.message.Message) -> str:
    return str(metadata["Name"]).strip()


def _requirements(
    distribution: BundledDistribution, environment: Mapping[str, str]
) -> Iterable[str]:
    """Canonical names this distribution requires on the platform, extras not requested."""
    for line in distribution.metadata.get_all("Requires-Dist") or []:
        try:
            requirement = Requirement(str(line).strip())
        except InvalidRequirement as error:
            raise SbomError(
                f"distribution {distribution.name} {distribution.version} has an invalid "
                f"Requires-Dist {str(line).strip()!r}: {error}"
            ) from None
        if requirement.marker is not None:
            try:
                if not requirement.marker.evaluate(dict(environment)):
                    continue
            except (UndefinedComparison, UndefinedEnvironmentName):
                continue
        yield canonicalize_name(requirement.name)


def _graph_tops(required: Mapping[str, set[str]]) -> list[str]:
    """What the root depends on: distributions nothing else bundled requires, plus whatever cycles
    would otherwise leave unreachable, so every component is reachable from the root."""
    names = sorted(required)
    wanted = {t for targets in required.values() for t in targets}
    tops = [n for n in names if n not in wanted]
    reached: set[str] = set()

    def reach(name: str) -> None:
        stack = [name]
        while stack:
            current = stack.pop()
            if current not in reached:
                reached.add(current)
                stack.extend(t for t in required.get(current, ()) if t in required)

    for top in tops:
        reach(top)
    for name in names:
        if name not in reached:
            tops.append(name)
            reach(name)
    return sorted(tops)


def _target(
    key: str, components: Mapping[str, Component], layers: Mapping[str, Component]
) -> Component:
    return layers[key[len("layer:") :]] if key.startswith("layer:") else components[key]


def _distribution_component(distribution: BundledDistribution) -> Component:
    wheel_hash = HashType(alg=HashAlgorithm.SHA_256, content=distribution.wheel_sha256)
    return Component(
        type=ComponentType.LIBRARY,
        name=distribution.name,
        version=distribution.version,
        bom_ref=distribution.purl,
        purl=PackageURL(type="pypi", name=distribution.name, version=distribution.version),
        hashes=[wheel_hash],
        licenses=_licenses(distribution.metadata),
        external_references=[
            ExternalReference(
                type=ExternalReferenceType.DISTRIBUTION,
                # Where the wheel is, not a token a private index's URL may carry.
                url=XsUri(shown_url(distribution.wheel_url)),
                hashes=[wheel_hash],
            )
        ],
        properties=[Property(name=f"{_PROPERTY_PREFIX}wheel", value=distribution.wheel_filename)],
    )


def _layer_component(layer: LayerReference) -> Component:
    """A referenced layer, named and versioned as that layer's own SBOM names its root."""
    return Component(
        type=_COMPONENT_TYPES[Kind.LAYER],
        name=layer.name,
        version=layer.sha256,
        bom_ref=layer.name,  # the bom-ref of the root component of the layer's own SBOM
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=layer.sha256)],
        external_references=[
            ExternalReference(
                type=ExternalReferenceType.BOM,
                url=XsUri.make_bom_link(serial_number(layer.sha256), 1, layer.name),
            )
        ],
        properties=[Property(name=f"{_PROPERTY_PREFIX}kind", value=Kind.LAYER.value)],
    )


def _licenses(metadata: email.message.Message) -> list[License]:
    """The declared license: License-Expression (PEP 639), else a short License field, else the
    trove classifiers; nothing when the metadata states none."""
    factory = LicenseFactory()
    declared = LicenseAcknowledgement.DECLARED
    expression = " ".join(str(metadata.get("License-Expression", "")).split())
    if expression:
        return [factory.make_from_string(expression, license_acknowledgement=declared)]
    text = str(metadata.get("License", "")).strip()
    if (
        text
        and "\n" not in text
        and len(text) <= _MAX_LICENSE_NAME
        and text.upper() not in {"UNKNOWN", "NONE"}
    ):
        return [factory.make_from_string(text, license_acknowledgement=declared)]
    names = set()
    for classifier in metadata.get_all("Classifier") or []:
        parts = [part.strip() for part in str(classifier).split("::")]
        if (
            len(parts) >= 2
            and parts[0] == "License"
            and parts[-1] not in {"OSI Approved", "License"}
        ):
            names.add(parts[-1])
    return [DisjunctiveLicense(name=n, acknowledgement=declared) for n in sorted(names)]
