"""What ties an SBOM to its archive, in the standard library only (no Pants imports).

An SBOM names its archive twice: the serial number is a UUID v5 of the archive's SHA-256, and
the root component carries that SHA-256 as its version and hash. Everything else follows from
the bundled distributions alone. So the Pants rules have the SBOM written once per set of
distributions, with PLACEHOLDER_SHA256 where the archive's digest goes (a process whose inputs
do not change when first-party code does), and fill the digest in with `complete_sbom`, without
a process and without cyclonedx-python-lib.
"""

from __future__ import annotations

import re
import uuid

from lambda_rules.zipper.errors import ZipError

# uuid5(NAMESPACE_URL, "https://github.com/lambda-rules/lambda_rules/sbom/serialNumber"), fixed
# forever: changing it would change every SBOM's serial number.
SERIAL_NAMESPACE = uuid.UUID("9183e47e-6105-57bc-b226-22db4e04b716")
# No real archive or wheel hashes to 64 zeros; complete_sbom checks it occurs only where expected.
PLACEHOLDER_SHA256 = "0" * 64
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class SbomError(ZipError):
    """The archive, lockfile or arguments cannot give a truthful SBOM; the message says why."""


def serial_number(archive_sha256: str) -> uuid.UUID:
    """The SBOM's serial number: the same archive always gets the same one, on any host."""
    return uuid.uuid5(SERIAL_NAMESPACE, archive_sha256)


def complete_sbom(template: str, archive_sha256: str) -> str:
    """The SBOM of the archive whose SHA-256 is `archive_sha256`, from its template.

    The placeholder is a JSON string value exactly where the root component's version and hash
    are, and its serial number once; replacing those strings changes no other byte, since
    nothing is sorted by them (bom-refs are the root's name and purls).
    """
    if not SHA256_HEX.match(archive_sha256):
        raise SbomError(f"{archive_sha256!r} is not a lowercase hex SHA-256")
    digest, serial = f'"{PLACEHOLDER_SHA256}"', f'"{serial_number(PLACEHOLDER_SHA256).urn}"'
    if template.count(digest) != 2 or template.count(serial) != 1:
        raise SbomError(
            "not an SBOM template: expected the placeholder SHA-256 twice (the root component's "
            "version and hash) and its serial number once"
        )
    return template.replace(digest, f'"{archive_sha256}"').replace(
        serial, f'"{serial_number(archive_sha256).urn}"'
    )
