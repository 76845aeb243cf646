"""`[lambda-run]`: how `run` invokes a `lambda_function` locally."""

from __future__ import annotations

from pants.option.option_types import StrOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import softwrap

from lambda_rules.scripts.lambda_environment import DEFAULT_REGION, ENVIRONMENT_HELP


class LambdaRunSubsystem(Subsystem):
    options_scope = "lambda-run"
    help = (
        softwrap(
            """
        How `run` invokes a `lambda_function` locally: `./pants run path/to:function --
        event.json` (or `-`, or nothing, to read the event from standard input; relative paths
        are relative to the build root).

        It packages the function, extracts the zip into a fresh read-only directory (the task
        root), and calls the handler in a fresh CPython of the runtime's version (pyenv's
        `versions/3.X.*` first, then /usr/local/bin, /usr/bin, /bin) in isolated mode, with the
        module search path of the Lambda Python runtime (the task root, the layer directories,
        the standard library; no site-packages of the local interpreter), a context object, and
        the `timeout` of the target. Standard output gets the handler's return value as JSON, or
        on a function error Lambda's error payload (`errorMessage`, `errorType`, `requestId`,
        `stackTrace`) and exit status 1 (2 when nothing could be invoked: a bad event, no
        interpreter, a foreign architecture); what the handler prints goes to standard error, as it
        would go to the function's log. An `arm64` function is refused on an x86_64 machine (and
        the reverse): no emulator is used. The memory size is reported, not enforced.
        """
        )
        + "\n\n"
        + ENVIRONMENT_HELP
    )

    region = StrOption(
        default=DEFAULT_REGION,
        help=(
            "The region the handler sees in `AWS_REGION`, `AWS_DEFAULT_REGION` and its function "
            "ARN."
        ),
    )
