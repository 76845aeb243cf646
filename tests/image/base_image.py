"""A small base image for the tests, built as an OCI layout with the standard library only (AWS's
base cannot be downloaded here): one layer holding the runtime's entrypoint script, and a config
with Lambda's entrypoint, environment and working directory."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import deflate

ENTRYPOINT = b'#!/bin/sh\nexec /var/lang/bin/python3 -m awslambdaric "$@"\n'


def _blob(layout: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"sha256:{digest}"


def _layer() -> tuple[bytes, bytes]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("var", "var/task"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        info = tarfile.TarInfo("lambda-entrypoint.sh")
        info.mode, info.size = 0o755, len(ENTRYPOINT)
        tar.addfile(info, io.BytesIO(ENTRYPOINT))
    raw = buffer.getvalue()
    # The pinned libdeflate, not the stdlib's gzip, whose header differs between CPythons: the
    # base's digest is the same under any host Python (bench/bench_image.py builds it too).
    return raw, deflate.gzip_compress(raw, 6)


def manifest_descriptor(layout: Path, architecture: str) -> dict:
    raw, gzipped = _layer()
    config = {
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Entrypoint": ["/lambda-entrypoint.sh"],
            "Env": ["LAMBDA_TASK_ROOT=/var/task", "LAMBDA_RUNTIME_DIR=/var/runtime"],
            "WorkingDir": "/var/task",
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(raw).hexdigest()}"]},
    }
    config_bytes = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _blob(layout, config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": _blob(layout, gzipped),
                "size": len(gzipped),
            }
        ],
    }
    manifest_bytes = json.dumps(manifest).encode()
    return {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": _blob(layout, manifest_bytes),
        "size": len(manifest_bytes),
        "platform": {"architecture": architecture, "os": "linux"},
    }


def write_base(layout: Path, architectures: tuple[str, ...] = ("amd64",), index: bool = False):
    """An OCI layout of the base for `architectures`: one manifest, or with `index` an image
    index that names one manifest per architecture."""
    layout.mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    descriptors = [manifest_descriptor(layout, a) for a in architectures]
    if index:
        nested = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": descriptors,
            }
        ).encode()
        descriptors = [
            {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": _blob(layout, nested),
                "size": len(nested),
            }
        ]
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": descriptors}))
    return layout
