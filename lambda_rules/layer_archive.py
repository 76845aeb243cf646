"""A built layer read back from its zip and the manifest beside it: what a function deployed with
it must know (its distributions, its files, its size), for `lambda-zip package` and `verify`.
No Pants imports.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lambda_rules import facts, layers
from lambda_rules.errors import LambdaRulesError
from lambda_rules.facts import Kind
from lambda_rules.zipper.entry_data import read_entry_data
from lambda_rules.zipper.reader import read_archive
from lambda_rules.zipper.summary import file_sha256


class LayerArchiveError(LambdaRulesError):
    """A --layer that is not a layer built by `package`."""


def layer_contents(name: str, archive: Path) -> layers.LayerContents:
    """What a layer built by `package` holds, from its zip and the manifest beside it."""
    manifest_path = archive.with_suffix(".json")
    try:
        document = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise LayerArchiveError(
            f"--layer {name}={archive}: cannot read its manifest {manifest_path} ({error}); "
            "pass a layer zip written by `lambda-zip package --kind layer` or `pants package`"
        ) from None
    if document.get("kind") != Kind.LAYER.value or file_sha256(archive)[0] != document.get(
        "sha256"
    ):
        raise LayerArchiveError(
            f"--layer {name}={archive}: {manifest_path} does not describe this zip as a layer"
        )
    return layers.LayerContents(
        address=name,
        runtime=document["runtime"],
        architecture=document["architecture"],
        distributions={d["name"]: d["version"] for d in document["distributions"]},
        first_party=_file_fingerprints(archive),
        unzipped_size=document["unzipped_size"],
        sha256_hex=document["sha256"],
        sha256_base64=document["filebase64sha256"],
    )


def _file_fingerprints(archive: Path) -> dict[str, str]:
    """Package path -> content sha256 of every file a layer puts under python/."""
    prefix = f"{facts.LAYER_PYTHON_DIR}/"
    found = {}
    with open(archive, "rb") as f:
        for entry in read_archive(archive).entries:
            if entry.name.startswith(prefix):
                data = read_entry_data(f, str(archive), entry)
                found[entry.name[len(prefix) :]] = hashlib.sha256(data).hexdigest()
    return found
