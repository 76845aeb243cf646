"""The wheel tags and the pex complete platform that a Lambda runtime and architecture imply.

Wheels are chosen by tags, and the tags are derived here from documented facts about each runtime
(CPython version, Amazon Linux release and its glibc, CPU architecture) with `packaging.tags`,
instead of being captured from a container image (the facts themselves: `lambda_rules.facts`).
The glibc version is the ceiling: a wheel whose
manylinux tag needs a newer glibc than the runtime has can never match.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Protocol

from lambda_rules.errors import LambdaRulesError
from lambda_rules.facts import ARCHITECTURES, RUNTIMES, Runtime

if TYPE_CHECKING:
    # Imported where tags are made: a warm `lambda-zip package` ranks no tag (its choice of
    # wheels is cached), and importing `packaging.tags` costs it about 15 ms.
    from packaging import tags


class UnknownPlatformError(LambdaRulesError, ValueError):
    """A runtime or architecture that Lambda does not offer."""


# The oldest glibc each manylinux architecture was ever defined for (manylinux1 / manylinux2014).
_OLDEST_GLIBC_MINOR = {"x86_64": 5, "aarch64": 17}
# PEP 600 aliases of the legacy manylinux tags, emitted right after their glibc version.
_LEGACY_ALIASES = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


@dataclass(frozen=True)
class LambdaPlatform:
    """One runtime on one architecture: what the deployment package must run on."""

    runtime: Runtime
    architecture: str

    @property
    def machine(self) -> str:
        return ARCHITECTURES[self.architecture]

    @property
    def description(self) -> str:
        glibc = ".".join(map(str, self.runtime.glibc))
        return (
            f"{self.runtime.name} on {self.architecture} ({self.runtime.os_release}, glibc {glibc})"
        )

    def platform_tags(self) -> list[str]:
        """Manylinux platform tags, most specific first, never newer than the runtime's glibc."""
        major, ceiling = self.runtime.glibc
        result = []
        for minor in range(ceiling, _OLDEST_GLIBC_MINOR[self.machine] - 1, -1):
            result.append(f"manylinux_{major}_{minor}_{self.machine}")
            legacy = _LEGACY_ALIASES.get((major, minor))
            if legacy:
                result.append(f"{legacy}_{self.machine}")
        return result

    @property
    def interpreter_constraint(self) -> str:
        """The CPython this runtime is, as a constraint (`CPython==3.12.*`)."""
        major, minor = self.runtime.python_version
        return f"CPython=={major}.{minor}.*"

    def tag_summary(self) -> str:
        """A short human description of the accepted wheel tags, for error messages."""
        major, minor = self.runtime.python_version
        glibc_major, glibc_minor = self.runtime.glibc
        return (
            f"cp{major}{minor} or abi3 or py3, "
            f"manylinux up to glibc {glibc_major}.{glibc_minor} {self.machine}"
        )

    def compatible_tags(self) -> Iterator[tags.Tag]:
        """All tags a wheel may carry to run here, in pip's order of preference."""
        from packaging import tags

        version = self.runtime.python_version
        cp = f"cp{version[0]}{version[1]}"
        platforms = self.platform_tags()
        yield from tags.cpython_tags(version, abis=[cp], platforms=platforms)
        yield from tags.compatible_tags(version, interpreter=cp, platforms=platforms)

    def marker_environment(self) -> dict[str, str]:
        major, minor = self.runtime.python_version
        return {
            "implementation_name": "cpython",
            # Lambda updates patch releases in place; .0 is the conservative floor for markers.
            "implementation_version": f"{major}.{minor}.0",
            "os_name": "posix",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": f"{major}.{minor}.0",
            "python_version": f"{major}.{minor}",
            "sys_platform": "linux",
        }

    def complete_platform_json(self) -> str:
        """The platform in pex's `--complete-platform` format, as stable text."""
        document = {
            "marker_environment": self.marker_environment(),
            "compatible_tags": [str(tag) for tag in self.compatible_tags()],
        }
        return json.dumps(document, indent=2, sort_keys=True) + "\n"


def lambda_platform(runtime: str, architecture: str) -> LambdaPlatform:
    if runtime not in RUNTIMES:
        raise UnknownPlatformError(
            f"Unknown Lambda runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}."
        )
    if architecture not in ARCHITECTURES:
        raise UnknownPlatformError(
            f"Unknown Lambda architecture {architecture!r}; "
            f"choose one of {', '.join(ARCHITECTURES)}."
        )
    return LambdaPlatform(RUNTIMES[runtime], architecture)


class WheelPlatform(Protocol):
    """What choosing wheels from a lock needs of a platform."""

    @property
    def description(self) -> str: ...

    def compatible_tags(self) -> Iterator[tags.Tag]: ...

    def marker_environment(self) -> dict[str, str]: ...

    def tag_summary(self) -> str: ...


@dataclass(frozen=True)
class InterpreterPlatform:
    """The interpreter running this process: the one that runs the Pants rules' tool, whose
    wheels are chosen from the tool's lock for it as an installer on it would choose them."""

    description: str
    wheel_tags: tuple[tags.Tag, ...]
    environment: tuple[tuple[str, str], ...]

    @classmethod
    def current(cls) -> InterpreterPlatform:
        from packaging import tags
        from packaging.markers import default_environment

        environment = default_environment()
        return cls(
            f"CPython {environment['python_full_version']} on {environment['platform_machine']}"
            " (the interpreter running Pants)",
            tuple(tags.sys_tags()),
            tuple(sorted(environment.items())),
        )

    def compatible_tags(self) -> Iterator[tags.Tag]:
        return iter(self.wheel_tags)

    def marker_environment(self) -> dict[str, str]:
        return dict(self.environment)

    def tag_summary(self) -> str:
        first, count = self.wheel_tags[0], len(self.wheel_tags) - 1
        return f"{first}, or one of {count} more"
