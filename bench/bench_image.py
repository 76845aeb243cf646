"""Container images of a function over 250 MB (numpy, pandas, scipy, scikit-learn on python3.12;
tests/image/fixtures), `lambda-zip image` against the Dockerfile teams write, built by buildah
(issue "Functions over 250 MB"), in the same run:

- ours: `lambda-zip image` from the lock, on a base layout;
- buildah: uv's documented install (`uv pip install --python-platform x86_64-manylinux2014
  --python-version 3.12 --target deps -r requirements.txt`), then `buildah bud` of `FROM
  oci:BASE`, `COPY deps/ /var/task/`, `COPY app.py /var/task/`, `CMD ["app.handler"]` (vfs
  storage, chroot isolation: no daemon), then `buildah push` to an OCI layout. AWS's Dockerfile
  runs `pip install` inside the base instead; that base cannot be downloaded here, and the test
  base has no Python, so the install runs on the host, as multi-stage builds do.

Cold: empty caches (lambda-zip's `--cache-dir`, uv's cache, buildah's storage). Warm: a second
function on the same requirements right after, caches kept. Then each tool's three images (the
first function, the second, and the first with one handler line edited) are pushed with skopeo to
Debian's docker-registry on 127.0.0.1 in that order, and the registry's blob store is weighed
after each push: what a push really adds.

The base is the tests' small base (tests/image/base_image.py), the same for both tools.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List

from bench_package import Caches
from common import REPO_ROOT, RUNTIME, Measured, markdown_table, measure, spread

FIXTURES = REPO_ROOT / "tests/image/fixtures"
TOOLS = ("lambda-zip image", "uv + buildah")
VARIANTS = {  # name -> what is appended to the handler's source
    "first": "",
    "second": "# the second function\n",
    "edited": "EDITED = True\n",
}


def write_base(layout: Path) -> str:
    """The tests' base layout, pinned: `DIR@sha256:...`."""
    sys.path.insert(0, str(REPO_ROOT))
    from tests.image.base_image import write_base as write

    write(layout)
    (manifest,) = json.loads((layout / "index.json").read_text())["manifests"]
    return f"{layout}@{manifest['digest']}"


@dataclass
class Build:
    """One tool's builds in one run: times and the image layouts it wrote, by variant."""

    measured: Dict[str, Measured] = field(default_factory=dict)
    layouts: Dict[str, Path] = field(default_factory=dict)
    digests: Dict[str, str] = field(default_factory=dict)


def _source(workdir: Path, variant: str) -> Path:
    source = workdir / f"src-{variant}"
    source.mkdir(parents=True)
    (source / "app.py").write_text((FIXTURES / "app.py").read_text() + VARIANTS[variant])
    return source


def ours(tools, workdir: Path, base: str, variant: str, caches: Caches) -> tuple[Measured, Path]:
    out = workdir / f"out-{variant}" / "image"
    argv = [
        tools.bin / "lambda-zip", "image", _source(workdir, variant) / "app.py",
        "--source-root", workdir / f"src-{variant}", "--handler", "app.handler",
        "--runtime", RUNTIME, "-r", FIXTURES / "requirements.txt",
        "--lockfile", FIXTURES / "sklearn.lock", "--name", "sk:image", "--base", base,
        "-o", out, "--cache-dir", caches.root / "parts",
    ]  # fmt: skip
    return measure(argv, env=caches.env(tools)), out


BUILDAH_SCRIPT = """set -e
uv pip install --quiet --python-platform x86_64-manylinux2014 --python-version "$PYVERSION" \\
  --target "$CONTEXT/deps" -r "$REQUIREMENTS"
cp "$SOURCE" "$CONTEXT/app.py"
printf 'FROM oci:%s\\nCOPY deps/ /var/task/\\nCOPY app.py /var/task/\\nCMD ["app.handler"]\\n' \\
  "$BASE" > "$CONTEXT/Dockerfile"
B="buildah --storage-driver vfs --root $STORAGE/root --runroot $STORAGE/run"
$B bud --quiet --isolation chroot -t "fn:$VARIANT" "$CONTEXT" > /dev/null
$B push --quiet "fn:$VARIANT" "oci:$OUT:latest"
"""


def buildah(tools, workdir: Path, base: str, variant: str, caches: Caches) -> tuple[Measured, Path]:
    out = workdir / f"out-{variant}" / "image"
    out.parent.mkdir(parents=True)
    extra = {
        "PYVERSION": RUNTIME.removeprefix("python"),
        "CONTEXT": str(workdir / f"context-{variant}"),
        "REQUIREMENTS": str(FIXTURES / "requirements.txt"),
        "SOURCE": str(_source(workdir, variant) / "app.py"),
        "BASE": base.split("@")[0],
        "STORAGE": str(caches.root / "buildah"),
        "VARIANT": variant,
        "OUT": str(out),
    }
    env = caches.env(tools)
    env["PATH"] += ":/usr/sbin:/sbin"  # buildah's helpers
    argv = ["/bin/sh", "-c", BUILDAH_SCRIPT]
    return measure(argv, env={**env, **extra}), out


def manifest_digest(layout: Path) -> str:
    (descriptor,) = json.loads((layout / "index.json").read_text())["manifests"]
    return descriptor["digest"]


def build_all(tools, workdir: Path, base: str, runs: int) -> Dict[str, List[Build]]:
    """Each run: each tool (alternating which goes first) cold, then warm, then the edit."""
    results: Dict[str, List[Build]] = {tool: [] for tool in TOOLS}
    for run in range(runs):
        order = TOOLS if run % 2 == 0 else tuple(reversed(TOOLS))
        for tool in order:
            build = Build()
            root = workdir / f"run-{run}" / tool.replace(" ", "-")
            caches = Caches(root / "caches")
            for variant in VARIANTS:
                step = ours if tool == TOOLS[0] else buildah
                measured, layout = step(tools, root / variant, base, variant, caches)
                build.measured[variant], build.layouts[variant] = measured, layout
                build.digests[variant] = manifest_digest(layout)
            results[tool].append(build)
            if tool == TOOLS[1]:  # buildah's vfs storage is a full copy per layer: gigabytes
                shutil.rmtree(caches.root / "buildah", ignore_errors=True)
    return results


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _registry(root: Path) -> Iterator[str]:
    port = _free_port()
    root.mkdir(parents=True)
    config = root / "registry.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root / 'store'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    server = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()


def _stored_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in store.glob("docker/registry/v2/blobs/sha256/*/*/data"))


def pushed_bytes(build: Build, root: Path) -> Dict[str, int]:
    """Bytes the registry's blob store grew by with each push, in the order of `VARIANTS`."""
    grown = {}
    with _registry(root) as address:
        for variant, layout in build.layouts.items():
            before = _stored_bytes(root / "store")
            subprocess.run(
                ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:latest",
                 f"docker://{address}/fn:{variant}"],
                check=True, capture_output=True,
            )  # fmt: skip
            grown[variant] = _stored_bytes(root / "store") - before
    return grown


def layer_sizes(layout: Path) -> tuple[int, int]:
    """(compressed, unpacked) bytes of the image's layers, base included."""
    manifest = json.loads((layout / "blobs/sha256" / manifest_digest(layout)[7:]).read_text())
    compressed = sum(layer["size"] for layer in manifest["layers"])
    unpacked = 0
    for layer in manifest["layers"]:
        with open(layout / "blobs/sha256" / layer["digest"][7:], "rb") as blob:
            unpacked += len(gzip.decompress(blob.read()))
    return compressed, unpacked


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{count / 1e3:.1f} kB"


def _time_rows(results: Dict[str, List[Build]]) -> List[tuple]:
    rows = []
    for variant, label in (("first", "cold"), ("second", "warm: a second function")):
        ours_s = [b.measured[variant].seconds for b in results[TOOLS[0]]]
        theirs = [b.measured[variant].seconds for b in results[TOOLS[1]]]
        rows.append(
            (
                label,
                f"{statistics.median(ours_s):.2f}",
                f"{statistics.median(theirs):.2f}",
                f"{statistics.median(ours_s) / statistics.median(theirs):.2f}",
                spread(ours_s),
                spread(theirs),
                f"{max(b.measured[variant].peak_kib for b in results[TOOLS[0]]) / 1024:.0f}",
                f"{max(b.measured[variant].peak_kib for b in results[TOOLS[1]]) / 1024:.0f}",
            )
        )
    return rows


def _stability_notes(results: Dict[str, List[Build]]) -> List[str]:
    notes = []
    for tool in TOOLS:
        distinct = {b.digests["first"] for b in results[tool]}
        notes.append(
            f"- {tool}: the first function's image digest over {len(results[tool])} cold "
            f"builds: {len(distinct)} distinct ({', '.join(sorted(d[7:19] for d in distinct))})."
        )
    return notes


def section(tools, workdir: Path, runs: int) -> str:
    missing = [c for c in ("buildah", "skopeo", "docker-registry") if not shutil.which(c)]
    if missing:
        raise RuntimeError(f"the image section needs {', '.join(missing)}: apt-get install them")
    base = write_base(workdir / "base")
    results = build_all(tools, workdir, base, runs)
    pushes = {tool: pushed_bytes(results[tool][-1], workdir / f"registry-{i}")
              for i, tool in enumerate(TOOLS)}  # fmt: skip
    sizes = {tool: layer_sizes(results[tool][-1].layouts["first"]) for tool in TOOLS}
    part_files = workdir.glob("run-*/lambda-zip-image/caches/parts/parts/*/*.zip")
    parts = sum(p.stat().st_size for p in part_files)
    push_rows = [(v, *(_size(pushes[tool][v]) for tool in TOOLS)) for v in VARIANTS]
    return "\n".join(
        [
            "## Container images of a function over 250 MB (numpy, pandas, scipy, scikit-learn; "
            f"{RUNTIME}): `lambda-zip image` against uv + buildah",
            "",
            f"Median of {runs} runs, the tools alternating; peak RSS of the largest process, MiB.",
            "",
            markdown_table(
                (
                    "build",
                    "ours s",
                    "buildah s",
                    "ours / buildah",
                    "ours min–max",
                    "buildah min–max",
                    "ours MiB",
                    "buildah MiB",
                ),
                _time_rows(results),
            ),  # fmt: skip
            "",
            "What each push added to the registry's blob store, pushed in this order:",
            "",
            markdown_table(("image", *TOOLS), push_rows),
            "",
            *_stability_notes(results),
            f"- Image layers (base included), {TOOLS[0]}: {sizes[TOOLS[0]][0] / 1e6:.1f} MB "
            f"compressed, {sizes[TOOLS[0]][1] / 1e6:.1f} MB unpacked; {TOOLS[1]}: "
            f"{sizes[TOOLS[1]][0] / 1e6:.1f} MB, {sizes[TOOLS[1]][1] / 1e6:.1f} MB. The same "
            f"function's zip parts (the cache of one cold run, over {runs} runs): "
            f"{parts / runs / 1e6:.1f} MB.",
            "- buildah's layers hold the files uv installed (with `bin/`, `__pycache__` where "
            "present, and the install's mtimes); ours hold what the zip would. buildah 1.28 "
            "(Debian) with `--isolation chroot --storage-driver vfs`.",
        ]
    )
