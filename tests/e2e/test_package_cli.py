"""`lambda-zip package` without Pants: the README's command line, installed from the plugin wheel
into venvs of CPython 3.9 and 3.13, against `pants package` of the same targets, real PyPI wheels,
real interpreters and Terraform."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, file_sha256_hex, interrupts_as_in_a_terminal
from tests.e2e.test_package import EXAMPLE_GOLDEN_OUTPUTS, EXAMPLE_GOLDEN_SHA256

pytestmark = pytest.mark.e2e

# The Pants targets `package` must match, beside the README example (fn:lambda).
EXTRA_TARGETS = """
lambda_function(
    name="lambda_arm", handler="app.py:handler", runtime="python3.12", architecture="arm64"
)
lambda_function(
    name="lambda_pyc", handler="app.py:handler", runtime="python3.12", compile_bytecode=True
)
"""
OUTPUTS = ("{}.zip", "{}.json", "{}.cdx.json")


def readme_command() -> list[str]:
    """The `lambda-zip package` command line of the README, as a newcomer would paste it."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("## Without Pants") :]
    match = re.search(r"^(lambda-zip package .*?[^\\])$", section, flags=re.M | re.S)
    assert match, "the README shows no `lambda-zip package` command"
    return match[1].replace("\\\n", " ").split()


def run(command, cwd: Path, *, umask: int = 0o022, check: bool = True, **kwargs):
    result = subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.umask(umask),
        **kwargs,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def package_example(lambda_zip: Path, root: Path, cache: Path, *extra: str, umask=0o022):
    """The README's command, in checkout `root`, with its own part cache."""
    command = readme_command()
    return run([lambda_zip, *command[1:], "--cache-dir", cache, *extra], root, umask=umask)


def test_readme_command_gives_the_pants_bytes_also_for_arm64_and_bytecode(
    clone_factory, cli, tmp_path
):
    clone = clone_factory("pants-and-cli")
    clone.write("fn/BUILD", (clone.root / "fn/BUILD").read_text() + EXTRA_TARGETS)
    clone.pants("package", "//fn:lambda", "//fn:lambda_arm", "//fn:lambda_pyc")
    lambda_zip = cli(9)
    # pex is off the build path: `.[package]` does not even install it.
    installed = subprocess.run(
        [str(lambda_zip.parent / "python"), "-I", "-c",
         "import importlib.metadata as m; print(*(d.metadata['Name'] for d in m.distributions()))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert "lambda-rules" in installed and "installer" in installed and "pex" not in installed
    cache = tmp_path / "cache"
    package_example(lambda_zip, clone.root, cache, "-o", "cli/fn/lambda.zip")
    command = readme_command()[1:]
    name_at = command.index("--name")
    for name, flags in (("lambda_arm", ["--architecture", "arm64"]),
                        ("lambda_pyc", ["--compile-bytecode"])):  # fmt: skip
        named = [*command[: name_at + 1], f"fn:{name}", *command[name_at + 2 :]]
        run([lambda_zip, *named, *flags, "--cache-dir", cache, "-o", f"cli/fn/{name}.zip"],
            clone.root)  # fmt: skip
    assert {
        relpath: file_sha256_hex(clone.root / "cli" / relpath) for relpath in EXAMPLE_GOLDEN_OUTPUTS
    } == EXAMPLE_GOLDEN_OUTPUTS
    for name in ("lambda", "lambda_arm", "lambda_pyc"):
        for pattern in OUTPUTS:
            relpath = f"fn/{pattern.format(name)}"
            assert (clone.root / "cli" / relpath).read_bytes() == (
                clone.root / "dist" / relpath
            ).read_bytes(), relpath
        cas = sorted(p.name for p in (clone.root / f"cli/fn/{name}.cas").iterdir())
        assert cas == sorted(p.name for p in (clone.root / f"dist/fn/{name}.cas").iterdir())
    manifest = json.loads((clone.root / "cli/fn/lambda_pyc.json").read_text())
    assert manifest["bytecode_compiled_by"].startswith("3.12.")
    assert json.loads((clone.root / "cli/fn/lambda_arm.json").read_text())["architecture"] == (
        "arm64"
    )
    assert_terraform_reads_the_manifest(clone.root / "cli/fn", tmp_path / "tf")


def assert_terraform_reads_the_manifest(dist: Path, workdir: Path) -> None:
    """The README's Terraform wiring: the manifest's hash is the zip's filebase64sha256."""
    workdir.mkdir()
    (workdir / "main.tf").write_text(
        'locals {\n  fn = jsondecode(file("%s/lambda.json"))\n}\n'
        'output "matches" {\n'
        '  value = filebase64sha256("%s/${local.fn.artifact}") == local.fn.filebase64sha256\n'
        "}\n" % (dist, dist)
    )
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    run(["terraform", "init", "-input=false", "-backend=false"], workdir, env=env)
    run(["terraform", "apply", "-auto-approve", "-input=false"], workdir, env=env)
    out = run(["terraform", "output", "-json", "matches"], workdir, env=env).stdout
    assert json.loads(out) is True


def test_identical_across_clones_umask_mtimes_and_host_python(clone_factory, cli, tmp_path):
    first = clone_factory("cli-first")
    second = clone_factory("cli-second-at-another-path", reverse_order=True)
    for path in second.root.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            os.utime(path, (1_234_567_890, 1_234_567_890))
    package_example(cli(9), first.root, tmp_path / "cache-a", umask=0o022)
    package_example(cli(13), second.root, tmp_path / "cache-b", umask=0o077)
    for pattern in OUTPUTS:
        relpath = f"dist/fn/{pattern.format('lambda')}"
        assert (first.root / relpath).read_bytes() == (second.root / relpath).read_bytes()
        assert (second.root / relpath).stat().st_mode & 0o777 == 0o644, relpath
    assert file_sha256_hex(second.root / "dist/fn/lambda.zip") == EXAMPLE_GOLDEN_SHA256


def test_second_function_compresses_nothing_and_a_damaged_part_is_rebuilt(cli, tmp_path):
    lambda_zip, cache = cli(9), tmp_path / "cache"
    first = package_example(lambda_zip, REPO_ROOT, cache, "-o", tmp_path / "a/lambda.zip")
    assert first.stdout.splitlines()[-1].endswith("compressed 6, from the cache 0")
    # Cold: each part was zipped by the worker that fetched and laid out its wheel.
    assert file_sha256_hex(tmp_path / "a/lambda.zip") == EXAMPLE_GOLDEN_SHA256
    # Another function on the same requirements: its own handler module, same lock.
    other = tmp_path / "src/other"
    other.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "fn/app.py", other / "orders.py")

    def orders(cache: Path, out: str):
        return run([lambda_zip, "package", other / "orders.py", "--source-root", other,
                    "--handler", "orders.handler", "--runtime", "python3.12",
                    "-r", REPO_ROOT / "3rdparty/python/requirements.txt",
                    "--lockfile", REPO_ROOT / "3rdparty/python/default.lock",
                    "--cache-dir", cache, "-o", tmp_path / out / "orders.zip"], tmp_path,
                   env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})  # fmt: skip

    second = orders(cache, "b")
    assert second.stdout.splitlines()[-1].endswith("compressed 0, from the cache 6")
    # Its SBOM template comes from the cache too (no SBOM writer imported), and is the one a
    # fresh cache writes.
    assert "lambda_rules.sbom\n" not in second.stderr and "cyclonedx.model" not in second.stderr
    fresh = orders(tmp_path / "fresh-cache", "fresh").stderr
    assert "lambda_rules.sbom\n" in fresh and "cyclonedx.model" in fresh
    for name in ("orders.cdx.json", "orders.json"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes()

    part = sorted((cache / "parts").glob("*/*.zip"))[0]
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    again = package_example(lambda_zip, REPO_ROOT, cache, "-o", tmp_path / "c/lambda.zip")
    assert "damaged cache entry rebuilt" in again.stderr and part.name in again.stderr
    assert again.stdout.splitlines()[-1].endswith("compressed 1, from the cache 5")
    assert file_sha256_hex(tmp_path / "c/lambda.zip") == EXAMPLE_GOLDEN_SHA256
    assert file_sha256_hex(part) != file_sha256_hex(tmp_path / "c/lambda.zip")

    # How the wheels were laid out is kept too (a warm run reads no wheel); a damaged record is
    # redone.
    (record,) = (cache / "resolutions").glob("*.json")
    damaged = record.read_text().replace('"listing"', '"listinq"', 1)
    assert damaged != record.read_text()
    record.write_text(damaged)
    redone = package_example(lambda_zip, REPO_ROOT, cache, "-o", tmp_path / "d/lambda.zip")
    assert "damaged cache entry rebuilt" in redone.stderr and record.name in redone.stderr
    assert file_sha256_hex(tmp_path / "d/lambda.zip") == EXAMPLE_GOLDEN_SHA256
    assert redone.stdout.splitlines()[-1].endswith("compressed 0, from the cache 6")

    # And so is the choice of wheels from the lock (a warm run parses no lock).
    (choice,) = (cache / "selections").glob("*.json")
    choice.write_text(choice.read_text().replace("orjson", "orjsom", 1))
    rechosen = package_example(lambda_zip, REPO_ROOT, cache, "-o", tmp_path / "e/lambda.zip")
    assert "damaged cache entry rebuilt" in rechosen.stderr and choice.name in rechosen.stderr
    assert file_sha256_hex(tmp_path / "e/lambda.zip") == EXAMPLE_GOLDEN_SHA256

    # Parts lost, layouts kept: the wheels are laid out and zipped again, from the wheel cache,
    # to the same bytes.
    shutil.rmtree(cache / "parts")
    rezipped = package_example(lambda_zip, REPO_ROOT, cache, "-o", tmp_path / "f/lambda.zip")
    assert rezipped.stdout.splitlines()[-1].endswith("compressed 6, from the cache 0")
    assert file_sha256_hex(tmp_path / "f/lambda.zip") == EXAMPLE_GOLDEN_SHA256


def test_two_concurrent_runs_on_one_empty_cache(cli, tmp_path):
    lambda_zip, cache = cli(9), tmp_path / "cache"
    command = readme_command()[1:]
    runs = [
        subprocess.Popen(
            [
                str(lambda_zip),
                *command,
                "--cache-dir",
                str(cache),
                "-o",
                str(tmp_path / f"{i}/lambda.zip"),
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for process in runs:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
    assert file_sha256_hex(tmp_path / "0/lambda.zip") == EXAMPLE_GOLDEN_SHA256
    for name in ("lambda.zip", "lambda.json", "lambda.cdx.json"):
        assert (tmp_path / "0" / name).read_bytes() == (tmp_path / "1" / name).read_bytes()


def assert_refused(result, out_dir: Path, *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("lambda-zip: error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    assert not out_dir.exists() or not any(out_dir.iterdir()), "nothing may be written"


@pytest.mark.parametrize(
    "change, needles",
    [
        ({"--runtime": "python3.8"}, ["python3.8", "python3.12"]),
        ({"--handler": "nowhere.handler"}, ["fn:lambda", "nowhere.py", "--handler"]),
        ({"--handler": "app.no_such"}, ["`no_such`", "app.py"]),
    ],
    ids=["unknown-runtime", "handler-module-missing", "handler-function-missing"],
)
def test_bad_input_is_one_line_and_writes_nothing(cli, tmp_path, change, needles):
    command = readme_command()[1:]
    for option, value in change.items():
        command[command.index(option) + 1] = value
    out = tmp_path / "out"
    result = run([cli(9), *command, "--cache-dir", tmp_path / "cache", "-o", out / "x.zip"],
                 REPO_ROOT, check=False)  # fmt: skip
    assert_refused(result, out, *needles)


def fixtures_command(tmp_path: Path, requirement: str, runtime: str, *extra: str) -> list:
    app = tmp_path / "src/app.py"
    app.parent.mkdir(parents=True, exist_ok=True)
    app.write_text("def handler(event, context):\n    return 1\n")
    return ["package", app, "--source-root", app.parent, "--handler", "app.handler",
            "--runtime", runtime, "--requirement", requirement,
            "--lockfile", REPO_ROOT / "tests/e2e/fixtures/fixtures.lock",
            "--cache-dir", tmp_path / "cache", *extra]  # fmt: skip


def test_requirement_without_a_wheel_for_the_platform_is_named(cli, tmp_path):
    out = tmp_path / "out"
    result = run([cli(9), *fixtures_command(tmp_path, "numpy==1.26.4", "python3.13"),
                  "-o", out / "x.zip"], tmp_path, check=False)  # fmt: skip
    assert_refused(result, out, "numpy 1.26.4", "no wheel for python3.13 on x86_64")


def test_requirement_the_lockfile_does_not_hold_is_named(cli, tmp_path):
    out = tmp_path / "out"
    result = run([cli(9), *fixtures_command(tmp_path, "flask", "python3.12"),
                  "-o", out / "x.zip"], tmp_path, check=False)  # fmt: skip
    assert_refused(result, out, "does not hold flask", "fixtures.lock")


def test_requirements_without_a_lockfile_are_refused_with_the_lock_command(cli, tmp_path):
    command = fixtures_command(tmp_path, "numpy==1.26.4", "python3.12")
    at = command.index("--lockfile")
    del command[at : at + 2]
    out = tmp_path / "out"
    result = run([cli(9), *command, "-o", out / "x.zip"], tmp_path, check=False)
    assert_refused(result, out, "--lockfile", "uv lock", "pants generate-lockfiles")


def test_unwritable_output_folder(cli, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder would go\n")
    result = run([cli(9), *readme_command()[1:], "--cache-dir", tmp_path / "cache",
                  "-o", blocker / "fn/lambda.zip"], REPO_ROOT, check=False)  # fmt: skip
    assert_refused(result, blocker.parent / "nothing", str(blocker / "fn"), "cannot write")
    assert blocker.read_text().startswith("a file")


def test_interrupted_run_writes_nothing(cli, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "out"
    process = subprocess.Popen(
        [str(cli(9)), *readme_command()[1:], "--compile-bytecode", "--cache-dir", str(cache),
         "-o", str(out / "fn/lambda.zip")],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=interrupts_as_in_a_terminal,
    )  # fmt: skip
    # Interrupted while it compiles and compresses: once the first part is in the cache.
    deadline = time.monotonic() + 120
    while not list(cache.glob("parts/*/*.json")) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert process.poll() is None, "the run finished before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted; no output was written" in err and "Traceback" not in err
    assert not out.exists()
