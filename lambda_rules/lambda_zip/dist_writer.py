"""Where `lambda-zip package` writes: the output folder checked before any work, then the zip,
its content-addressed copy, manifest and SBOM put in place together (no Pants imports)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

from lambda_rules import outputs
from lambda_rules.errors import LambdaRulesError


class OutputError(LambdaRulesError):
    """The outputs cannot be written where they were asked for."""


def output_directory(output: Path) -> tuple[Path, list[Path]]:
    """The folder the outputs go to, checked writable before any work, and the folders made for
    it (outermost first)."""
    if output.suffix != ".zip":
        raise OutputError(f"{output}: the output must be a .zip path, e.g. dist/fn/lambda.zip")
    directory = output.parent
    created = [d for d in (directory, *directory.parents) if not d.exists()][::-1]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=directory, prefix=".lambda-zip-probe-")
        probe.close()
    except OSError as error:
        for made in reversed(created):
            if made.is_dir():
                made.rmdir()
        raise OutputError(
            f"{directory}: cannot write the package there ({error.strerror}); choose another "
            "--output or fix the folder's permissions"
        ) from None
    return directory, created


def write_outputs(directory: Path, merged: Path, written: outputs.PackageOutputs) -> None:
    """Everything into a scratch folder beside the outputs, then renamed into place with
    interrupts held back: a run leaves the previous outputs or the new ones, never a mix."""
    paths = written.paths
    with tempfile.TemporaryDirectory(prefix=".lambda-zip-", dir=directory) as scratch:
        staged = Path(scratch)
        shutil.copyfile(merged, staged / "archive")
        os.chmod(staged / "archive", 0o644)
        for name, data in (("manifest", written.manifest), ("sbom", written.sbom)):
            (staged / name).write_bytes(data)
            os.chmod(staged / name, 0o644)
        cas_directory = directory / paths.content_addressed_directory
        blocked = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            # Like `pants package`, the content-addressed folder holds this build's copy only.
            shutil.rmtree(cas_directory, ignore_errors=True)
            cas_directory.mkdir(parents=True)
            shutil.copyfile(staged / "archive", directory / paths.content_addressed)
            os.chmod(directory / paths.content_addressed, 0o644)
            os.replace(staged / "sbom", directory / paths.sbom)
            os.replace(staged / "manifest", directory / paths.manifest)
            os.replace(staged / "archive", directory / paths.archive)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
