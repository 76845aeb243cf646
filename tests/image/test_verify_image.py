"""`lambda-zip verify DIR`: every file of an image layout's layers of ours accounted for from the
lockfile's wheels and the sources. Each tampered layout is rewritten as an attacker would: the
layer a canonical tar again, and every digest that names it (config, manifest, index, DIR.json)
made to match, so that only the content differs."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Callable

import pytest

from lambda_rules import image
from tests.image.base_image import write_base
from tests.image.test_image import LOCK, build, function_copy
from tests.locks.test_any_lock import lambda_zip

Files = dict[str, tuple[bool, bytes]]  # name in the layer -> (executable, content)
TOP, DISTRIBUTIONS, BASE = -1, -2, 0  # positions in the image manifest's layers


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The README function's image on the test base, and what verify needs to derive it."""
    root = tmp_path_factory.mktemp("verify-image")
    base = write_base(root / "base")
    source = function_copy(root / "fn")
    out = root / "out/image"
    result = build(source, out, root / "cache", "--base", base)
    assert result.returncode == 0, result.stderr
    return {"layout": out, "source": source, "cache": root / "cache"}


def verify(built: dict[str, Path], layout: Path, *extra: object):
    source = built["source"]
    return lambda_zip(
        "verify", layout, "--lockfile", LOCK, "--source-root", source, source / "app.py",
        "--cache-dir", built["cache"], *extra,
    )  # fmt: skip


def copy_of(built: dict[str, Path], tmp_path: Path) -> Path:
    """The layout with its DIR.json and DIR.cdx.json, copied to be tampered with."""
    layout = tmp_path / "copy/image"
    shutil.copytree(built["layout"], layout)
    for suffix in (".json", ".cdx.json"):
        shutil.copy2(beside(built["layout"], suffix), beside(layout, suffix))
    return layout


def beside(layout: Path, suffix: str) -> Path:
    return layout.with_name(layout.name + suffix)


def blob(layout: Path, digest: str) -> Path:
    return layout / "blobs/sha256" / digest[7:]


def held(layout: Path) -> tuple[dict, dict, dict]:
    """(index, image manifest, config) of the layout."""
    index = json.loads((layout / "index.json").read_bytes())
    manifest = json.loads(blob(layout, index["manifests"][0]["digest"]).read_bytes())
    config = json.loads(blob(layout, manifest["config"]["digest"]).read_bytes())
    return index, manifest, config


def write_blob(layout: Path, data: bytes) -> dict:
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    blob(layout, digest).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def rewrite(layout: Path, manifest: dict, config: dict, index: dict) -> None:
    """The config and manifest written as new blobs, and the index and DIR.json naming them."""
    manifest["config"].update(write_blob(layout, image.canonical_json(config)))
    written = write_blob(layout, image.canonical_json(manifest))
    index["manifests"][0].update(written)
    (layout / "index.json").write_bytes(image.canonical_json(index))
    document = json.loads(beside(layout, ".json").read_bytes())
    document["image_digest"] = written["digest"]
    beside(layout, ".json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def layer_files(path: Path) -> Files:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: (bool(m.mode & 0o111), tar.extractfile(m).read()) for m in tar if m.isreg()}


def plain_layer(files: Files) -> tuple[bytes, bytes]:
    """(tar, gzipped) of `files`, as a base's layer may be written."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, (executable, data) in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.mode, info.size = (0o755 if executable else 0o644), len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), gzip.compress(buffer.getvalue(), mtime=0)


def tamper(layout: Path, position: int, change: Callable[[Files], None]) -> None:
    """The layer at `position` of the image manifest rewritten with `change` applied to its
    files (ours canonically, as `image` writes a layer), and every digest naming it updated."""
    index, manifest, config = held(layout)
    descriptor = manifest["layers"][position]
    files = layer_files(blob(layout, descriptor["digest"]))
    change(files)
    document = json.loads(beside(layout, ".json").read_bytes())
    listed = [la for la in document["layers"] if la["digest"] == descriptor["digest"]]
    if listed:
        root = "var/task/"
        ours = [(n[len(root) :], x, d) for n, (x, d) in files.items()]
        layer = image.tar_layer(ours, root.rstrip("/"), listed[0]["holds"])
        gzipped, diff_id = layer.blob.data, layer.diff_id
        listed[0].update(diff_id=diff_id, size=len(gzipped), unpacked_size=layer.unpacked_size)
    else:
        raw, gzipped = plain_layer(files)
        diff_id = f"sha256:{hashlib.sha256(raw).hexdigest()}"
    blob(layout, descriptor["digest"]).unlink()
    descriptor.update(write_blob(layout, gzipped))
    for entry in listed:
        entry["digest"] = descriptor["digest"]
    beside(layout, ".json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    config["rootfs"]["diff_ids"][position] = diff_id
    rewrite(layout, manifest, config, index)


def flip_a_byte(files: Files, name: str) -> None:
    executable, data = files[name]
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0x01
    files[name] = (executable, bytes(changed))


def test_a_fresh_image_verifies(built):
    result = verify(built, built["layout"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"verified {built['layout']}: "), result.stdout
    assert "files under /var/task in its 2 layers of ours, every one accounted for" in result.stdout
    assert "1 first-party files" in result.stdout and result.stderr == ""


def test_the_fresh_image_with_its_manifest_and_sbom_named_verifies(built):
    layout = built["layout"]
    result = verify(built, layout, "--manifest", beside(layout, ".json"),
                    "--sbom", beside(layout, ".cdx.json"))  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "position, change, named",
    [
        (TOP, lambda f: f.update({"var/task/app.py": (False, b"def handler(e, c): pass\n")}),
         "app.py (first-party source): altered"),
        (DISTRIBUTIONS, lambda f: flip_a_byte(f, "var/task/pydantic/main.py"),
         "pydantic/main.py (pydantic 2.12.5): altered"),
        (TOP, lambda f: f.update({"var/task/evil.py": (False, b"import os\n")}),
         "evil.py: unexplained"),
        (DISTRIBUTIONS, lambda f: f.update({"var/task/sitecustomize.py": (False, b"x = 1\n")}),
         "sitecustomize.py: unexplained"),
        (DISTRIBUTIONS, lambda f: f.pop("var/task/orjson/__init__.py"),
         "orjson/__init__.py (orjson 3.11.5): missing from the image"),
        (TOP, lambda f: f.update({"var/task/app.py": (True, f["var/task/app.py"][1])}),
         "app.py (first-party source): mode differs (executable True, expected False)"),
        (BASE, lambda f: f.update({"var/task/app_override.py": (False, b"x = 1\n")}),
         "a base layer, puts app_override.py under /var/task"),
    ],
    ids=["first-party", "distribution", "added", "added-to-distributions", "removed", "mode",
         "base"],
)  # fmt: skip
def test_tampering_is_caught_and_named(built, tmp_path, position, change, named):
    layout = copy_of(built, tmp_path)
    tamper(layout, position, change)
    result = verify(built, layout)
    assert result.returncode == 1, result.stdout + result.stderr
    assert named in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert all(line.startswith("lambda-zip: verify: ") for line in result.stderr.splitlines())


def test_a_blob_changed_under_its_digest_is_named(built, tmp_path):
    layout = copy_of(built, tmp_path)
    top = json.loads(beside(layout, ".json").read_bytes())["layers"][-1]["digest"]
    path = blob(layout, top)
    data = bytearray(path.read_bytes())
    data[-8] ^= 0x01  # the gzip trailer's CRC
    path.write_bytes(bytes(data))
    result = verify(built, layout)
    assert result.returncode == 1, result.stderr
    assert f"its blob {top} holds sha256:" in result.stderr, result.stderr


def test_a_handler_changed_in_the_config_is_named(built, tmp_path):
    layout = copy_of(built, tmp_path)
    index, manifest, config = held(layout)
    config["config"]["Cmd"] = ["evil.handler"]
    rewrite(layout, manifest, config, index)
    result = verify(built, layout)
    assert result.returncode == 1, result.stderr
    assert "the image config's Cmd is ['evil.handler'], not ['app.handler']" in result.stderr


def test_a_layer_dir_json_does_not_list_is_named(built, tmp_path):
    layout = copy_of(built, tmp_path)
    document = json.loads(beside(layout, ".json").read_bytes())
    document["layers"].reverse()
    beside(layout, ".json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    result = verify(built, layout)
    assert result.returncode == 1, result.stderr
    assert "not the image manifest's last layers, in order" in result.stderr


@pytest.mark.parametrize("case", ["no DIR.json", "not an image's", "a layer blob missing"])
def test_bad_input_is_one_line_and_exit_2(built, tmp_path, case):
    layout = copy_of(built, tmp_path)
    if case == "no DIR.json":
        beside(layout, ".json").unlink()
    elif case == "not an image's":
        beside(layout, ".json").write_text('{"kind": "function"}')
    else:
        blob(layout, held(layout)[1]["layers"][DISTRIBUTIONS]["digest"]).unlink()
    result = verify(built, layout)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("lambda-zip: error: ") and str(layout) in line, line
    assert result.stdout == ""


def test_a_folder_that_is_no_layout_is_refused(built, tmp_path):
    result = verify(built, tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "not an OCI image layout" in line
