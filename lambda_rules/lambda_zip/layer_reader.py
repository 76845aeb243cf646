"""A built layer read back from its zip and the manifest beside it: what a function deployed with
it must know (its distributions, its files, its size), for `lambda-zip package` and `verify`.
No Pants imports.
"""

from __future__ import annotations

import csv
import hashlib
import io
import posixpath
import re
from pathlib import Path

from lambda_rules import facts, layers, manifest
from lambda_rules.errors import LambdaRulesError
from lambda_rules.facts import Kind
from lambda_rules.zipper.entry_data import read_entry_data
from lambda_rules.zipper.reader import read_archive
from lambda_rules.zipper.summary import file_sha256

# A distribution's RECORD at the top of the layer's python/ (`lambda_layer` lays them out flat).
_RECORD = re.compile(r"[^/]+\.dist-info/RECORD")


class LayerArchiveError(LambdaRulesError):
    """A --layer that is not a layer built by `package`."""


def layer_contents(name: str, archive: Path) -> layers.LayerContents:
    """What a layer built by `package` holds, from its zip and the manifest beside it."""
    manifest_path = archive.with_suffix(".json")
    try:
        document = manifest.LambdaManifest.from_json(
            manifest_path.read_text(encoding="utf-8"), shown=str(manifest_path)
        )
    except (OSError, manifest.ManifestError) as error:
        raise LayerArchiveError(
            f"--layer {name}={archive}: cannot read its manifest {manifest_path} ({error}); "
            "pass a layer zip written by `lambda-zip package --kind layer` or `pants package`"
        ) from None
    if document.kind is not Kind.LAYER or file_sha256(archive)[0] != document.sha256_hex:
        raise LayerArchiveError(
            f"--layer {name}={archive}: {manifest_path} does not describe this zip as a layer"
        )
    return layers.LayerContents(
        address=name,
        runtime=document.runtime,
        architecture=document.architecture,
        distributions={d.name: d.version for d in document.distributions},
        first_party=_first_party_fingerprints(archive),
        unzipped_size=document.unzipped_size,
        sha256_hex=document.sha256_hex,
        sha256_base64=document.sha256_base64,
    )


def _first_party_fingerprints(archive: Path) -> dict[str, str]:
    """Package path -> content sha256 of each first-party source, resource or file the layer puts
    under python/, as the Pants rules fingerprint a layer's (`LayerContents.first_party`): not a
    distribution's files (every one is in its RECORD, which installing checked), nor `.pyc`."""
    prefix = f"{facts.LAYER_PYTHON_DIR}/"
    contents: dict[str, bytes] = {}
    with open(archive, "rb") as f:
        for entry in read_archive(archive).entries:
            if entry.name.startswith(prefix) and not entry.name.endswith(".pyc"):
                contents[entry.name[len(prefix) :]] = read_entry_data(f, str(archive), entry)
    distribution_files = {
        _in_root(record_path, row[0])
        for record_path, data in contents.items()
        if _RECORD.fullmatch(record_path)
        for row in csv.reader(io.StringIO(data.decode("utf-8")))
        if row
    }
    return {
        path: hashlib.sha256(data).hexdigest()
        for path, data in contents.items()
        if path not in distribution_files
    }


def _in_root(record_path: str, listed: str) -> str:
    """A RECORD row's path, relative to the directory its `.dist-info` sits in."""
    return posixpath.normpath(
        posixpath.join(posixpath.dirname(posixpath.dirname(record_path)), listed)
    )
