"""The invoker's view of an image (`pants run` on a `lambda_image`): /var/task as the image's
file system shows it, its layers applied in order."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import deflate
import pytest

from lambda_rules.scripts.task_root import ArchiveError, extract_image


def _layer(members: list[tuple[str, bytes | None]]) -> bytes:
    """A gzipped layer of (name, content) members; content None is a directory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return deflate.gzip_compress(buffer.getvalue(), 6)


def _layout(root: Path, layers: list[bytes]) -> Path:
    blobs = root / "blobs/sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}"

    manifest = json.dumps({"layers": [{"digest": blob(layer)} for layer in layers]}).encode()
    index = {"manifests": [{"digest": blob(manifest)}]}
    (root / "index.json").write_text(json.dumps(index))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return root


def test_later_layers_replace_and_white_out_earlier_files(tmp_path):
    layout = _layout(
        tmp_path / "image",
        [
            _layer([("etc/passwd", b"root"), ("var/task/app.py", b"v1"), ("var/task/old.py", b"")]),
            _layer([("var/task/app.py", b"v2"), ("var/task/.wh.old.py", b""),
                    ("var/task/pkg", None), ("var/task/pkg/mod.py", b"m")]),
        ],
    )  # fmt: skip
    task = tmp_path / "task"
    task.mkdir()
    assert extract_image(layout, task) == 2
    assert (task / "app.py").read_bytes() == b"v2"
    assert not (task / "old.py").exists() and not (task / "passwd").exists()
    assert (task / "pkg/mod.py").read_bytes() == b"m"


def test_a_member_escaping_the_task_root_is_refused(tmp_path):
    layout = _layout(tmp_path / "image", [_layer([("var/task/../../x", b"evil")])])
    with pytest.raises(ArchiveError, match="unsafe path"):
        extract_image(layout, tmp_path)
