"""`lambda-zip image`: reproducible Lambda container images from the same parts, checked with
independent tools (umoci unpacks the layout, skopeo pushes it to a real registry: Debian's
`docker-registry` on 127.0.0.1) and against the zip `package` builds from the same inputs."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from lambda_rules import image
from tests.conftest import REPO_ROOT
from tests.image.base_image import write_base
from tests.locks.test_any_lock import lambda_zip

REQUIREMENTS = REPO_ROOT / "3rdparty/python/requirements.txt"
LOCK = REPO_ROOT / "3rdparty/python/default.lock"


def build(source: Path, out: Path, cache: Path, *extra: object, kind: str = "image", umask=0o022):
    """`lambda-zip image` (or `package`) of the README example's function in `source`."""
    old = os.umask(umask)
    try:
        return lambda_zip(
            kind, source / "app.py", "--source-root", source, "--handler", "app.handler",
            "--runtime", "python3.12", "-r", REQUIREMENTS, "--lockfile", LOCK,
            "--name", "fn:lambda", "-o", out, "--cache-dir", cache, *extra,
        )  # fmt: skip
    finally:
        os.umask(old)


def image_of(out: Path) -> dict:
    return json.loads(out.with_name(f"{out.name}.json").read_text())


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return write_base(tmp_path_factory.mktemp("base") / "layout")


def function_copy(root: Path, text: str | None = None) -> Path:
    root.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "fn/app.py", root / "app.py")
    if text is not None:
        (root / "app.py").write_text(text)
    return root


def test_the_same_digests_from_other_paths_umasks_and_mtimes(tmp_path, base):
    first = function_copy(tmp_path / "a/fn")
    second = function_copy(tmp_path / "elsewhere/deeper/fn")
    os.utime(second / "app.py", (1_234_567_890, 1_234_567_890))
    one = build(first, tmp_path / "one/image", tmp_path / "cache-1", "--base", base)
    two = build(second, tmp_path / "two/image", tmp_path / "cache-2", "--base", base, umask=0o077)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    documents = [image_of(tmp_path / name / "image") for name in ("one", "two")]
    assert documents[0] == documents[1]
    assert [layer["digest"] for layer in documents[0]["layers"]]
    blobs = [sorted(p.name for p in (tmp_path / n / "image/blobs/sha256").iterdir()) for n in
             ("one", "two")]  # fmt: skip
    assert blobs[0] == blobs[1]
    assert (tmp_path / "two/image/index.json").stat().st_mode & 0o777 == 0o644


def test_umoci_unpacks_the_layout_and_its_task_root_is_the_zip(tmp_path, base):
    source = function_copy(tmp_path / "fn")
    cache = tmp_path / "cache"
    assert build(source, tmp_path / "out/image", cache, "--base", base).returncode == 0
    assert build(source, tmp_path / "zip/lambda.zip", cache, kind="package").returncode == 0
    inspected = json.loads(subprocess.run(
        ["skopeo", "inspect", f"oci:{tmp_path / 'out/image'}:latest"],
        capture_output=True, text=True, check=True,
    ).stdout)  # fmt: skip
    assert inspected["Digest"] == image_of(tmp_path / "out/image")["image_digest"]
    assert inspected["Architecture"] == "amd64"
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{tmp_path / 'out/image'}:latest", str(bundle)],
        check=True, capture_output=True,
    )  # fmt: skip
    task_root = bundle / "rootfs/var/task"
    unpacked = {
        p.relative_to(task_root).as_posix(): (p.read_bytes(), bool(p.stat().st_mode & 0o111))
        for p in task_root.rglob("*")
        if p.is_file()
    }
    with zipfile.ZipFile(tmp_path / "zip/lambda.zip") as opened:
        zipped = {
            i.filename: (opened.read(i), bool((i.external_attr >> 16) & 0o111))
            for i in opened.infolist()
        }
    assert unpacked == zipped
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["args"] == ["/lambda-entrypoint.sh", "app.handler"]
    assert "LAMBDA_TASK_ROOT=/var/task" in config["process"]["env"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def registry(tmp_path):
    """Debian's docker-registry (distribution 2.8) on 127.0.0.1, storing under tmp_path."""
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {tmp_path / 'registry'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    server = subprocess.Popen(["docker-registry", "serve", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    server.terminate()
    server.wait()


def push(layout: Path, reference: str) -> str:
    """skopeo's copy to the registry; the digest the registry then reports."""
    subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:latest",
         f"docker://{reference}"], capture_output=True, check=True,
    )  # fmt: skip
    inspected = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{reference}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(inspected)["Digest"]


def stored_blobs(storage: Path) -> set[str]:
    """The blobs the registry holds, each once whatever the repositories and tags naming it."""
    return {f"sha256:{p.name}" for p in storage.glob("docker/registry/v2/blobs/sha256/*/*")}


def test_a_registry_stores_shared_layers_once_and_an_edit_pushes_the_top_layer(
    tmp_path, base, registry
):
    cache = tmp_path / "cache"
    first = function_copy(tmp_path / "first")
    other = function_copy(tmp_path / "other", (REPO_ROOT / "fn/app.py").read_text() + "# other\n")
    edited = function_copy(tmp_path / "edited", (REPO_ROOT / "fn/app.py").read_text() + "X = 1\n")
    for name, source in (("first", first), ("other", other), ("edited", edited)):
        result = build(source, tmp_path / f"out/{name}", cache, "--base", base)
        assert result.returncode == 0, result.stderr
    documents = {n: image_of(tmp_path / f"out/{n}") for n in ("first", "other", "edited")}

    storage = tmp_path / "registry"
    assert (
        push(tmp_path / "out/first", f"{registry}/fn:first") == documents["first"]["image_digest"]
    )
    before = stored_blobs(storage)
    assert (
        push(tmp_path / "out/other", f"{registry}/fn:other") == documents["other"]["image_digest"]
    )
    manifest_digest = documents["other"]["image_digest"]
    manifest = json.loads((tmp_path / "out/other/blobs/sha256" / manifest_digest[7:]).read_text())
    # Only the function's own layer, the config and the manifest are new: the base's and every
    # distribution layer were in the registry already.
    top = documents["other"]["layers"][-1]["digest"]
    assert stored_blobs(storage) - before == {top, manifest["config"]["digest"], manifest_digest}
    assert len(documents["other"]["layers"]) >= 2

    changed = [
        i
        for i, (a, b) in enumerate(zip(documents["first"]["layers"], documents["edited"]["layers"]))
        if a["digest"] != b["digest"]
    ]
    assert changed == [len(documents["first"]["layers"]) - 1]


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "does not exist"),
        ("arm64 base", "not linux/amd64"),
        ("index without amd64", "has no linux/amd64 image"),
    ],
)
def test_a_base_that_cannot_serve_is_refused_and_nothing_written(tmp_path, case, expected):
    layout = tmp_path / "base"
    if case == "arm64 base":
        write_base(layout, ("arm64",))
    elif case == "index without amd64":
        write_base(layout, ("arm64", "ppc64le"), index=True)
    out = tmp_path / "out/image"
    result = build(function_copy(tmp_path / "fn"), out, tmp_path / "cache", "--base", layout)
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert expected in line and str(layout) in line
    assert not out.exists() and not out.with_name("image.json").exists()


def test_an_index_base_gives_the_platforms_image(tmp_path):
    layout = write_base(tmp_path / "base", ("arm64", "amd64"), index=True)
    result = build(function_copy(tmp_path / "fn"), tmp_path / "out/image", tmp_path / "c",
                   "--base", layout)  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out/image/index.json").read_text())["manifests"]
    assert len(manifest) == 1 and manifest[0]["mediaType"] == image.MANIFEST_MEDIA_TYPE


def test_a_handler_missing_from_the_sources_is_refused(tmp_path, base):
    source = function_copy(tmp_path / "fn")
    out = tmp_path / "out/image"
    result = lambda_zip(
        "image", source / "app.py", "--source-root", source, "--handler", "missing.handler",
        "--runtime", "python3.12", "--base", base, "-o", out, "--cache-dir", tmp_path / "c",
    )  # fmt: skip
    assert result.returncode != 0 and "missing" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def test_an_image_over_the_limit_names_its_largest_layers(tmp_path, base):
    layers = [
        image.tar_layer([("big.bin", False, b"x" * 4096)], "var/task", "distributions big 1"),
        image.tar_layer([("small.py", False, b"y")], "var/task", "fn:lambda code"),
    ]
    with pytest.raises(image.ImageError, match=r"above Lambda's limit.*distributions big 1"):
        image.check_size(image.read_base(base, "x86_64"), layers, limit=4000)
    image.check_size(image.read_base(base, "x86_64"), layers, limit=1 << 30)


def test_the_readmes_image_command_is_its_package_command_with_a_base(tmp_path):
    text = (REPO_ROOT / "README.md").read_text()
    commands = {
        verb: re.search(rf"^(lambda-zip {verb} .*?[^\\])$", text, flags=re.M | re.S)[1]
        .replace("\\\n", " ")
        .split()
        for verb in ("package", "image")
    }

    def options(argv: list[str]) -> list[str]:
        kept, skip = [], False
        for arg in argv[2:]:
            if skip:
                skip = False
            elif arg in ("-o", "--base"):
                skip = True
            else:
                kept.append(arg)
        return kept

    assert options(commands["image"]) == options(commands["package"])
