"""What ties an SBOM to its archive, in the standard library only (no Pants imports).

An SBOM names its archive and its target: the serial number is a UUID v5 of the archive's
SHA-256, the root component carries that SHA-256 as its version and hash, and the target's
address as its name and bom-ref. Everything else follows from the bundled distributions alone. So
the Pants rules have the SBOM written once per set of distributions and platform, with
placeholders for the digest and the name (a process that first-party edits do not change and that
every function on the same requirements shares), and fill both in with `complete_sbom`, without a
process and without cyclonedx-python-lib.
"""

from __future__ import annotations

import json
import re
import uuid

from lambda_rules.errors import LambdaRulesError

# uuid5(NAMESPACE_URL, "https://github.com/lambda-rules/lambda_rules/sbom/serialNumber"), fixed
# forever: changing it would change every SBOM's serial number.
SERIAL_NAMESPACE = uuid.UUID("9183e47e-6105-57bc-b226-22db4e04b716")
# No real archive or wheel hashes to 64 zeros; complete_sbom checks it occurs only where expected.
PLACEHOLDER_SHA256 = "0" * 64
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# No Pants address looks like this; complete_sbom checks it stands only where the name goes.
PLACEHOLDER_NAME = "<name>"


class SbomError(LambdaRulesError):
    """The archive, lockfile or arguments cannot give a truthful SBOM; the message says why."""


def serial_number(archive_sha256: str) -> uuid.UUID:
    """The SBOM's serial number: the same archive always gets the same one, on any host."""
    return uuid.uuid5(SERIAL_NAMESPACE, archive_sha256)


def complete_sbom(template: str, archive_sha256: str, name: str) -> str:
    """The SBOM of the archive whose SHA-256 is `archive_sha256`, built from target `name`.

    The template is JSON as `sbom.generate_sbom_template` writes it; the placeholders must stand
    exactly in the root component (name, bom-ref, version, hash), its dependency entry and the
    serial number. The dependency entries are sorted again by bom-ref, as cyclonedx-python-lib
    sorts them, and the document is written as the template was: byte for byte what writing it
    with the real name and digest would give.
    """
    if not SHA256_HEX.match(archive_sha256):
        raise SbomError(f"{archive_sha256!r} is not a lowercase hex SHA-256")
    if not name:
        raise SbomError("the SBOM's root component needs a name (the target address)")
    try:
        document = json.loads(template)
        root = document["metadata"]["component"]
        (root_dependency,) = [d for d in document["dependencies"] if d["ref"] == PLACEHOLDER_NAME]
        placeholders = (
            root["name"] == root["bom-ref"] == PLACEHOLDER_NAME
            and root["version"] == PLACEHOLDER_SHA256
            and root["hashes"] == [{"alg": "SHA-256", "content": PLACEHOLDER_SHA256}]
            and document["serialNumber"] == serial_number(PLACEHOLDER_SHA256).urn
        )
    except (ValueError, KeyError, TypeError):
        placeholders = False
    if not placeholders:
        raise SbomError(
            "not an SBOM template: expected the placeholder name and SHA-256 in the root "
            "component, its dependency entry and the serial number"
        )
    if name in {component.get("bom-ref") for component in document.get("components", [])}:
        raise SbomError(
            f"the SBOM's name {name!r} is also the bom-ref of one of its components (a layer's "
            "name or a purl); give the target or the layer another name"
        )
    root.update({"name": name, "bom-ref": name, "version": archive_sha256})
    root["hashes"][0]["content"] = archive_sha256
    root_dependency["ref"] = name
    document["dependencies"].sort(key=lambda dependency: dependency["ref"])
    document["serialNumber"] = serial_number(archive_sha256).urn
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
