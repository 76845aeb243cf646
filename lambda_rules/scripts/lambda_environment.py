"""What the handler sees of Lambda: the environment the Python runtime sets, the names it reserves,
and a valid function name.

Part of the local invoker (`invoke.py`, shipped with it as `sandbox_files.INVOKER`), so it imports
only the standard library and `facts`. The Pants glue imports it too: `[lambda-run]` documents
this environment and defaults to this region, and `run` names the function from its address.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from lambda_rules import facts
from lambda_rules.errors import LambdaRulesError

DEFAULT_REGION = "us-east-1"

# Set by the invoker; `--env` may not override them (Lambda reserves them too).
RESERVED_ENV_VARS = frozenset(
    {
        "_HANDLER",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "TMPDIR",
    }
)

ENVIRONMENT_HELP = f"""\
The handler gets only these environment variables (nothing else from the caller's
environment, except extra variables: --env / the `extra_env_vars` field):
  LAMBDA_TASK_ROOT                 the extracted package, read-only (Lambda's {facts.TASK_ROOT});
                                   also the working directory
  LAMBDA_RUNTIME_DIR               the runtime bootstrap's directory (Lambda's {facts.RUNTIME_DIR})
  _HANDLER                         the handler, as module.function
  AWS_EXECUTION_ENV                AWS_Lambda_python3.X
  AWS_LAMBDA_FUNCTION_NAME         the function name (under `run`: from the target address,
                                   e.g. fn-lambda for fn:lambda)
  AWS_LAMBDA_FUNCTION_VERSION      $LATEST
  AWS_LAMBDA_FUNCTION_MEMORY_SIZE  the memory size in MB (reported, not enforced)
  AWS_LAMBDA_INITIALIZATION_TYPE   on-demand
  AWS_LAMBDA_LOG_GROUP_NAME        /aws/lambda/<function name>
  AWS_LAMBDA_LOG_STREAM_NAME       YYYY/MM/DD/[$LATEST]<32 hex digits>
  AWS_REGION, AWS_DEFAULT_REGION   the region (default {DEFAULT_REGION})
  TMPDIR                           fresh writable scratch space standing in for Lambda's
                                   /tmp (this machine's /tmp itself is not replaced)
  TZ=:UTC, LANG=en_US.UTF-8, PATH, LD_LIBRARY_PATH, PYTHONPATH=$LAMBDA_RUNTIME_DIR
"""


class EnvironmentVariableError(LambdaRulesError):
    """An extra variable that is malformed or that the runtime sets; the message says which."""


def function_name_for(spec: str) -> str:
    """A valid Lambda function name (letters, digits, - and _; at most 64) for e.g. `fn:lambda`."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", spec).strip("-") or "function"
    return name[-64:]


def parse_env_assignments(items: Iterable[str], environ: Mapping[str, str]) -> dict[str, str]:
    """`NAME=value` sets a value; a bare `NAME` copies it from `environ` when it is set there."""
    result = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise EnvironmentVariableError(
                f"invalid environment variable {item!r}: use NAME=value or NAME"
            )
        if name in RESERVED_ENV_VARS:
            raise EnvironmentVariableError(
                f"environment variable {name} is reserved: the runtime sets it "
                f"({', '.join(sorted(RESERVED_ENV_VARS))})"
            )
        if sep:
            result[name] = value
        elif name in environ:
            result[name] = environ[name]
    return result


def lambda_environment(
    *,
    runtime: str,
    handler: str,
    function_name: str,
    memory_size: int,
    region: str,
    task_root: Path,
    runtime_dir: Path,
    layer_root: Path,
    scratch_dir: Path,
    interpreter: Path,
    log_stream_name: str,
    extra: Mapping[str, str] = {},
) -> dict[str, str]:
    """The environment Lambda's Python runtime sets, with this invoke's directories standing in
    for /var/task, /var/runtime, /opt and /tmp, and the interpreter's lib for /var/lang/lib."""
    interpreter_lib = str(Path(interpreter).resolve().parent.parent / "lib")
    env = {
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": str(runtime_dir),
        "_HANDLER": handler,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime}",
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_size),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "TMPDIR": str(scratch_dir),
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": f"/usr/local/bin:/usr/bin/:/bin:{layer_root}/bin",
        "LD_LIBRARY_PATH": ":".join(
            [
                interpreter_lib,
                "/lib64",
                "/usr/lib64",
                str(runtime_dir),
                f"{runtime_dir}/lib",
                str(task_root),
                f"{task_root}/lib",
                f"{layer_root}/lib",
            ]
        ),
        "PYTHONPATH": str(runtime_dir),
    }
    env.update(extra)
    return env
