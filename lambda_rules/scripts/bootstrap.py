"""The Lambda Python runtime's bootstrap, for a local invoke.

`lambda_rules.scripts.invoke` copies this file into the runtime directory (Lambda's /var/runtime)
and runs it as `python3.X -I -B bootstrap.py CONFIG_JSON` in the runtime's CPython (3.9 to 3.14).
It sets `sys.path` like the Lambda Python runtime, imports the handler, builds the context object,
calls the handler and writes the response (or the error payload Lambda would return) to the
result file for the invoker to print.

Standard library only, and nothing of ours: `sys.path` holds the task root, the layer directories
and the standard library, as on Lambda, and no `lambda_rules`. So the invoker computes what needs
facts about Lambda and passes it in CONFIG_JSON:

    python_version     [3, X]: this interpreter must be CPython 3.X
    wrong_python_exit  the exit status when it is not
    task_root          the extracted package (Lambda's /var/task)
    layer_paths        what the layers add to sys.path after the task root, in order
    handler            module.function
    event_file         the event JSON
    result_file        where the outcome goes: {"status": "ok" | "error", "payload": ...}
    status_fd          a pipe: one byte once the handler module is imported (the init phase)
    request_id, function_arn, timeout_ms   for the context object
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import types
from collections.abc import Callable
from typing import Any


def _search_path(task_root: str, layer_paths: list[str]) -> list[str]:
    """Lambda's order: the task root, the layers' directories, then the runtime's standard
    library. Never the current directory, user site or the interpreter's site-packages."""
    stdlib = [
        p
        for p in sys.path
        if p and os.path.basename(os.path.normpath(p)) not in ("site-packages", "dist-packages")
    ]
    return [task_root, *layer_paths, *stdlib]


def _error(
    message: str, error_type: str, stack_trace: list[str] | None = None, request_id: str = ""
) -> dict[str, object]:
    return {
        "errorMessage": message or "",
        "errorType": error_type or "",
        "requestId": request_id or "",
        "stackTrace": stack_trace or [],
    }


def _user_frames(tb: types.TracebackType | None) -> list[str]:
    """The traceback from the first frame outside this file: the user's code, as Lambda shows."""
    frames = traceback.extract_tb(tb)
    for i, frame in enumerate(frames):
        if os.path.abspath(frame.filename) != os.path.abspath(__file__):
            return traceback.format_list(frames[i:])
    return []


def _load_handler(
    handler: str,
) -> tuple[Callable[..., object] | None, dict[str, object] | None]:
    """The handler function, or Lambda's error payload for why it cannot be loaded."""
    import importlib

    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        return None, _error(f"Bad handler '{handler}': {e}", "Runtime.MalformedHandlerName")
    if modname.split(".")[0] in sys.builtin_module_names:
        return None, _error(
            f"Cannot use built-in module {modname} as a handler module",
            "Runtime.BuiltInModuleConflict",
        )
    try:
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        return None, _error(
            f"Unable to import module '{modname}': {e}", "Runtime.ImportModuleError"
        )
    except SyntaxError as e:
        trace = [f'  File "{e.filename}" Line {e.lineno}\n    {e.text}']
        return None, _error(
            f"Syntax error in module '{modname}': {e}", "Runtime.UserCodeSyntaxError", trace
        )
    except Exception as e:
        return None, _error(str(e), type(e).__name__, _user_frames(sys.exc_info()[2]))
    try:
        return getattr(module, fname), None
    except AttributeError:
        return None, _error(
            f"Handler '{fname}' missing on module '{modname}'", "Runtime.HandlerNotFound"
        )


class CognitoIdentity:
    """`context.identity`: empty, as for any invoke that does not come from the mobile SDK."""

    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self) -> None:
        self.cognito_identity_id = None
        self.cognito_identity_pool_id = None

    def __repr__(self) -> str:
        return "CognitoIdentity([cognito_identity_id=None,cognito_identity_pool_id=None])"


class LambdaContext:
    """The handler's `context`, with the attributes and methods of the Lambda runtime's."""

    def __init__(self, request_id: str, function_arn: str, timeout_ms: int) -> None:
        env = os.environ
        self.aws_request_id = request_id
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = function_arn
        self.client_context = None
        self.identity = CognitoIdentity()
        self.tenant_id = None
        self._deadline = time.monotonic() + timeout_ms / 1000.0

    def get_remaining_time_in_millis(self) -> int:
        return max(0, round((self._deadline - time.monotonic()) * 1000))

    def log(self, msg: object) -> None:
        sys.stderr.write(str(msg))
        sys.stderr.flush()

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},client_context=None,"
            f"identity={self.identity!r}])"
        )


def _json_default(value: object) -> object:
    """What the runtime's JSON encoder adds: Decimal (e.g. from DynamoDB) as a number."""
    import decimal

    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _log_error(error: dict[str, Any]) -> None:
    """What Lambda writes to the function's log for an error, here on standard error."""
    lines = [f"[ERROR] {error['errorType']}: {error['errorMessage']}"]
    if error["stackTrace"]:
        lines.append("Traceback (most recent call last):")
        lines.extend(line.rstrip("\n") for line in error["stackTrace"])
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()


def _respond(result_file: str, status: str, payload: object) -> None:
    with open(result_file, "w", encoding="utf-8") as f:
        f.write(json.dumps({"status": status, "payload": payload}))


def main() -> None:
    config = json.loads(sys.argv[1])
    wanted = tuple(config["python_version"])
    if sys.version_info[:2] != wanted:
        found = ".".join(map(str, sys.version_info[:2]))
        expected = ".".join(map(str, wanted))
        sys.stderr.write(f"lambda-invoke: {sys.executable} is Python {found}, not {expected}\n")
        sys.exit(config["wrong_python_exit"])
    sys.path[:] = _search_path(config["task_root"], config["layer_paths"])
    # Handler output is log output: it goes to standard error, never into the response.
    sys.stdout = sys.stderr
    status_fd = config["status_fd"]

    handler, error = _load_handler(config["handler"])
    if error is not None:
        _log_error(error)
        _respond(config["result_file"], "error", error)
        return
    assert handler is not None, "no error: the handler was found"
    os.write(status_fd, b"I")  # init done: the invoke timeout starts now

    request_id = config["request_id"]
    with open(config["event_file"], "rb") as f:
        event = json.loads(f.read().decode("utf-8"))
    context = LambdaContext(request_id, config["function_arn"], config["timeout_ms"])
    try:
        response = handler(event, context)
    except Exception as e:
        error = _error(str(e), type(e).__name__, _user_frames(sys.exc_info()[2]), request_id)
        _log_error(error)
        _respond(config["result_file"], "error", error)
        return
    try:
        body = json.loads(json.dumps(response, default=_json_default))
    except (TypeError, ValueError) as e:
        error = _error(f"Unable to marshal response: {e}", "Runtime.MarshalError", [], request_id)
        _log_error(error)
        _respond(config["result_file"], "error", error)
        return
    _respond(config["result_file"], "ok", body)


if __name__ == "__main__":
    main()
    # Lambda freezes the environment once the response is sent: threads the handler left
    # running do not hold the invoke open.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(0)
