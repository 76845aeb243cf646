"""AWS Lambda's facts for Python functions and layers: the one place that states them.

Standard library only, no imports of ours: the Pants glue, the core modules, the target help texts
and the scripts that run in a sandbox or under the runtime's CPython (`lambda_rules.scripts`,
shipped into their sandboxes together with this file) all derive from what is written here.
Adding a runtime is one line in `RUNTIMES`, plus its tests.

Sources: https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html (runtimes, their OS),
https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html (limits),
https://docs.aws.amazon.com/lambda/latest/dg/packaging-layers.html (layer paths).
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class Lifecycle:
    """When AWS deprecates a runtime, then blocks creating and updating its functions (None: not
    announced). From https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html
    ("Runtime deprecation dates"); AWS has moved these dates before, so they warn, never refuse."""

    deprecated: datetime.date
    block_create: datetime.date | None = None
    block_update: datetime.date | None = None

    def describe(self, runtime: str) -> str:
        """'AWS deprecates python3.10 on 2026-10-31, blocks creating ... on ...' (no clock read:
        the same words before and after the dates)."""
        text = f"AWS deprecates {runtime} on {self.deprecated.isoformat()}"
        blocks = [
            f"{what} functions on {day.isoformat()}"
            for what, day in (("creating", self.block_create), ("updating", self.block_update))
            if day is not None
        ]
        return f"{text}, and blocks {' and '.join(blocks)}" if blocks else text


@dataclass(frozen=True)
class Runtime:
    """One Lambda Python runtime: its CPython minor version, its OS release and that OS's glibc,
    and its announced end of life."""

    name: str
    python_version: tuple[int, int]
    os_release: str
    glibc: tuple[int, int]
    lifecycle: Lifecycle | None = None

    @property
    def python_name(self) -> str:
        """The interpreter's executable name, `python3.12`."""
        major, minor = self.python_version
        return f"python{major}.{minor}"

    @property
    def cache_tag(self) -> str:
        """`sys.implementation.cache_tag` of the runtime's CPython: `.pyc` names carry it."""
        major, minor = self.python_version
        return f"cpython-{major}{minor}"


_AMAZON_LINUX_2 = ("Amazon Linux 2", (2, 26))
_AMAZON_LINUX_2023 = ("Amazon Linux 2023", (2, 34))

# python3.9-3.11 run on Amazon Linux 2 (glibc 2.26), python3.12 and later on Amazon Linux 2023
# (glibc 2.34). The glibc is the ceiling of a wheel's manylinux tag.
RUNTIMES: dict[str, Runtime] = {
    runtime.name: runtime
    for runtime in (
        # Only what AWS's runtime page states is written here; python3.9's blocking dates are
        # not recorded in this repository's sources, so none are claimed.
        Runtime("python3.9", (3, 9), *_AMAZON_LINUX_2, Lifecycle(datetime.date(2025, 12, 15))),
        Runtime(
            "python3.10",
            (3, 10),
            *_AMAZON_LINUX_2,
            Lifecycle(
                datetime.date(2026, 10, 31),
                block_create=datetime.date(2026, 11, 30),
                block_update=datetime.date(2027, 1, 15),
            ),
        ),
        Runtime("python3.11", (3, 11), *_AMAZON_LINUX_2),
        Runtime("python3.12", (3, 12), *_AMAZON_LINUX_2023),
        Runtime("python3.13", (3, 13), *_AMAZON_LINUX_2023),
        Runtime("python3.14", (3, 14), *_AMAZON_LINUX_2023),
    )
}

# The runtime a deprecated one's warning points to: the newest.
NEWEST_RUNTIME = list(RUNTIMES)[-1]


def lifecycle_warning(what: str, runtime: Runtime) -> str | None:
    """What packaging for `runtime` warns, or None while AWS has announced no end for it."""
    if runtime.lifecycle is None:
        return None
    return (
        f"{what}: {runtime.lifecycle.describe(runtime.name)}. Move to {NEWEST_RUNTIME} (see "
        "https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html); this package is "
        "still built."
    )


# Lambda's architecture names -> the machine names of wheel tags, ELF headers and
# `platform.machine()` on Linux.
ARCHITECTURES: dict[str, str] = {"x86_64": "x86_64", "arm64": "aarch64"}
DEFAULT_ARCHITECTURE = "x86_64"


class Kind(enum.Enum):
    """What a deployment package is: a function's code, or a layer that functions are deployed
    with. The value is how the manifest, the SBOM and the command line spell it."""

    FUNCTION = "function"
    LAYER = "layer"


# Where Lambda unpacks things. A function's package becomes the task root; every layer is
# unzipped into LAYER_ROOT, and the Python runtime imports from two directories of it.
TASK_ROOT = "/var/task"
RUNTIME_DIR = "/var/runtime"
LAYER_ROOT = "/opt"
LAYER_PYTHON_DIR = "python"
LAYER_SITE_PACKAGES = "lib/python{major}.{minor}/site-packages"


def layer_sys_path(root: str, python_version: tuple[int, int]) -> list[str]:
    """What layers unzipped at `root` add to the runtime's `sys.path`, after the task root and in
    its order: `python/lib/python3.X/site-packages`, then `python/`."""
    major, minor = python_version
    python = f"{root.rstrip('/')}/{LAYER_PYTHON_DIR}"
    return [f"{python}/{LAYER_SITE_PACKAGES.format(major=major, minor=minor)}", python]


@dataclass(frozen=True)
class Bounds:
    """An integer setting Lambda accepts within `minimum`..`maximum`, and its default."""

    default: int
    minimum: int
    maximum: int
    unit: str

    def describe(self) -> str:
        return f"{self.minimum} to {self.maximum} {self.unit}"


TIMEOUT = Bounds(default=3, minimum=1, maximum=900, unit="seconds")
MEMORY_SIZE = Bounds(default=128, minimum=128, maximum=10240, unit="MB")
# The init phase (importing the handler module) has its own 10 seconds.
INIT_TIMEOUT_SECONDS = 10.0
# A deployment package uploaded directly, rather than through S3.
DIRECT_UPLOAD_LIMIT_BYTES = 50 * 1024 * 1024
# A function and all its layers, unzipped.
UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024
# A container image, unpacked, all its layers included ("10 GB": gettingstarted-limits.html).
IMAGE_LIMIT_BYTES = 10 * 1024 * 1024 * 1024
MAX_LAYERS_PER_FUNCTION = 5
