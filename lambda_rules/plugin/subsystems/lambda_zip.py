"""`[lambda-zip]`: the deterministic zipper's tool environment, with its lockfile beside it."""

from __future__ import annotations

from pants.option.option_types import BoolOption, IntOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import softwrap

# Read by Pants with importlib.resources: the lockfile travels inside the installed plugin.
DEFAULT_LOCKFILE_URL = "resource://lambda_rules.plugin.subsystems/lambda_zip.lock"


class LambdaZipSubsystem(Subsystem):
    options_scope = "lambda-zip"
    help = "The deterministic zipper that writes `lambda_function` deployment packages."

    install_from_resolve = StrOption(
        advanced=True,
        default=None,
        help=softwrap(
            """
            Install the zipper's tool environment (the `deflate` package, i.e. libdeflate) from
            this resolve in `[python].resolves` instead of the lockfile shipped inside the
            plugin. The compressed bytes of every package depend on the `deflate` version, so
            the resolve must pin the same one (`deflate==0.8.1`); any other version is refused.
            """
        ),
    )
    compression_level = IntOption(
        default=None,
        help="libdeflate level 1-12; unset means the zipper's documented default.",
    )

    verify = BoolOption(
        default=False,
        help=softwrap(
            """
            After packaging, check each package with `lambda-zip verify` in a process that is
            never cached: every entry must come from the lockfile's wheels (fetched and
            checked against the lock's sha256s), from the target's sources, or from the
            runtime's CPython compiling them; the manifest and SBOM must agree. A package that
            fails is not written to `dist/`. Use it where the remote cache may hold results that
            others wrote, e.g. in the job that deploys (see the README's "Trust" section).
            """
        ),
    )

    def level_args(self) -> tuple[str, ...]:
        """The `lambda-zip` arguments for the chosen level (none: the zipper's default)."""
        level = self.compression_level
        return () if level is None else ("--level", str(level))
