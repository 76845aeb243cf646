"""`[lambda-zip]`: the deterministic zipper's tool environment, with its lockfile beside it."""

from __future__ import annotations

from pants.option.option_types import IntOption, StrOption
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

    def level_args(self) -> tuple[str, ...]:
        """The `lambda-zip` arguments for the chosen level (none: the zipper's default)."""
        level = self.compression_level
        return () if level is None else ("--level", str(level))
