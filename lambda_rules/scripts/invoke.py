"""Invoke a Lambda deployment package locally, the way the AWS Lambda Python runtime would.

    python -m lambda_rules.scripts.invoke FUNCTION.zip --runtime python3.12 \
        --handler app.handler [EVENT.json | -]

No Pants: `./pants run` ships the invoker's files (`lambda_rules.sandbox_files.INVOKER`) into its
sandbox as file contents and runs `main` with Pants' own interpreter (CPython 3.9 or later), so
it imports only the standard library and those files. This module is the host side's
orchestration: it extracts the package (and its layers) into a fresh directory made read-only
(`task_root`), creates writable scratch space, finds a CPython of the runtime's minor version
(`interpreters.find_interpreter`), builds the environment the Lambda runtime sets
(`lambda_environment`), runs the runtime bootstrap (`bootstrap.py`, copied into the runtime
directory) in that interpreter under the init and invoke timeouts, and prints the function's
response.

Standard output carries only the response: the handler's return value as JSON, or Lambda's error
payload (`errorMessage`, `errorType`, `requestId`, `stackTrace`). Everything the handler prints
or logs goes to standard error, as it would go to CloudWatch Logs rather than into the response.

Exit status: 0 the handler returned; 1 a function error (the handler raised, its module could
not be imported, the response was not JSON-serialisable, the runtime exited, or the timeout
passed), with Lambda's error payload on standard output; 2 nothing was invoked (bad arguments,
an unreadable or non-JSON event, no interpreter for the runtime, an architecture this machine
cannot run), with the reason on standard error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import select
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from lambda_rules import facts
from lambda_rules.errors import LambdaRulesError
from lambda_rules.scripts import interpreters
from lambda_rules.scripts.lambda_environment import (
    DEFAULT_REGION,
    ENVIRONMENT_HELP,
    EnvironmentVariableError,
    lambda_environment,
    parse_env_assignments,
)
from lambda_rules.scripts.task_root import (
    ArchiveError,
    Sandbox,
    remove_tree,
)

PROG = "lambda-invoke"

EXIT_OK = 0
EXIT_FUNCTION_ERROR = 1
EXIT_NOT_INVOKED = 2
# The bootstrap's exit status when the interpreter is not CPython of the runtime's version.
_EXIT_WRONG_PYTHON = 70

# `platform.machine()` spellings -> the machine names of `facts.ARCHITECTURES`.
_MACHINE_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}

# The placeholder account of the AWS documentation, for the function ARN in the context.
ACCOUNT_ID = "123456789012"
# The runtime bootstrap, copied into the runtime directory of every invoke.
_BOOTSTRAP = Path(__file__).with_name("bootstrap.py")


class InvokeError(LambdaRulesError):
    """Nothing could be invoked; the message says why and what to do."""


def host_machine() -> str:
    """This machine's name in `facts.ARCHITECTURES` terms (x86_64, aarch64)."""
    machine = platform.machine().lower()
    return _MACHINE_ALIASES.get(machine, machine)


def check_architecture(architecture: str, machine: str | None = None) -> None:
    """Native code runs only on its own machine type, and no emulator is used."""
    if architecture not in facts.ARCHITECTURES:
        raise InvokeError(
            f"unknown architecture {architecture!r}; choose one of {', '.join(facts.ARCHITECTURES)}"
        )
    machine = machine or host_machine()
    needed = facts.ARCHITECTURES[architecture]
    if needed != machine:
        raise InvokeError(
            f"the function is built for {architecture} ({needed}), and this machine is "
            f"{machine}: its native code cannot run here and no emulator is used. Run it on an "
            f'{needed} machine, or set architecture="{_architecture_for(machine)}" to try it '
            "here."
        )


def _architecture_for(machine: str) -> str:
    return next((arch for arch, m in facts.ARCHITECTURES.items() if m == machine), machine)


def read_event(source: str | None, stdin=None) -> bytes:
    """The event document as UTF-8 JSON bytes, from a file, or standard input for None and `-`."""
    if source is None or source == "-":
        stdin = stdin if stdin is not None else sys.stdin
        if stdin is None:
            raise InvokeError("no event file given and no standard input to read the event from")
        if hasattr(stdin, "isatty") and stdin.isatty():
            print(
                f"{PROG}: reading the event JSON from standard input (end with Ctrl-D)",
                file=sys.stderr,
            )
        raw = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read()
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        where = "the event on standard input"
    else:
        path = Path(source)
        if not path.exists():
            relative = "" if path.is_absolute() else f" (looked in {os.getcwd()})"
            raise InvokeError(f"event file {source} does not exist{relative}")
        if not path.is_file():
            raise InvokeError(f"event file {source} is not a file")
        raw = path.read_bytes()
        where = f"event file {source}"
    try:
        text = raw.decode("utf-8-sig")
        if not text.strip():
            raise InvokeError(f"{where} is empty; a Lambda event is a JSON document, e.g. {{}}")
        event = json.loads(text)
    except UnicodeDecodeError as e:
        raise InvokeError(f"{where} is not UTF-8: {e}") from None
    except json.JSONDecodeError as e:
        raise InvokeError(
            f"{where} is not JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    return json.dumps(event).encode("utf-8")


def _drop_capabilities() -> None:
    """Run as root like Lambda's unprivileged user: without capabilities, file modes bind.

    Root normally writes through 0444/0555 modes (CAP_DAC_OVERRIDE). Emptying the capability
    bounding set before exec leaves the handler with no capabilities at all, so the read-only
    task root really is read-only. Runs in the child between fork and exec.
    """
    if os.geteuid() != 0:
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    PR_CAPBSET_DROP = 24
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        last = 40
    for cap in range(last + 1):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)


def _can_drop_capabilities() -> bool:
    if os.geteuid() != 0:
        return True
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << 8))  # CAP_SETPCAP
    except (OSError, ValueError):
        pass
    return False


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.strsignal(-returncode) or f"signal {-returncode}"
        except (ValueError, AttributeError):
            name = f"signal {-returncode}"
        return f"signal: {name.lower()}"
    return f"exit status {returncode}"


def invoke(
    archive: Path,
    *,
    runtime: str,
    handler: str,
    event: bytes,
    architecture: str = facts.DEFAULT_ARCHITECTURE,
    timeout: float = facts.TIMEOUT.default,
    memory_size: int = facts.MEMORY_SIZE.default,
    function_name: str = "function",
    region: str = DEFAULT_REGION,
    layers: Sequence[Path] = (),
    extra_env: Mapping[str, str] = {},
    python: Path | None = None,
    init_timeout: float = facts.INIT_TIMEOUT_SECONDS,
    keep: bool = False,
) -> tuple[int, str]:
    """Invoke once; returns (exit status, response JSON text). Handler output goes to stderr."""
    spec = facts.RUNTIMES.get(runtime)
    if spec is None:
        raise InvokeError(f"unknown runtime {runtime!r}; choose one of {', '.join(facts.RUNTIMES)}")
    if not facts.TIMEOUT.minimum <= timeout <= facts.TIMEOUT.maximum:
        raise InvokeError(f"timeout must be {facts.TIMEOUT.describe()}, not {timeout}")
    if not facts.MEMORY_SIZE.minimum <= memory_size <= facts.MEMORY_SIZE.maximum:
        raise InvokeError(f"memory size must be {facts.MEMORY_SIZE.describe()}, not {memory_size}")
    check_architecture(architecture)
    interpreter = Path(python) if python else _find_interpreter(spec)
    if not os.access(interpreter, os.X_OK):
        raise InvokeError(f"interpreter {interpreter} is not an executable file")
    for path in [archive, *layers]:
        if not Path(path).is_file() and not (Path(path) / "oci-layout").is_file():
            raise InvokeError(f"{path} does not exist")

    work = Path(tempfile.mkdtemp(prefix="lambda-invoke-"))
    try:
        try:
            sandbox = Sandbox.create(
                work, Path(archive), [Path(layer) for layer in layers], event, _BOOTSTRAP
            )
        except ArchiveError as e:
            raise InvokeError(str(e)) from None
        request_id = str(uuid.uuid4())
        today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y/%m/%d")
        env = lambda_environment(
            runtime=runtime,
            handler=handler,
            function_name=function_name,
            memory_size=memory_size,
            region=region,
            task_root=sandbox.task_root,
            runtime_dir=sandbox.runtime_dir,
            layer_root=sandbox.opt_dir,
            scratch_dir=sandbox.scratch_dir,
            interpreter=interpreter,
            log_stream_name=f"{today}/[$LATEST]{uuid.uuid4().hex}",
            extra=extra_env,
        )
        config = {
            "python_version": list(spec.python_version),
            "wrong_python_exit": _EXIT_WRONG_PYTHON,
            "task_root": str(sandbox.task_root),
            "layer_paths": facts.layer_sys_path(str(sandbox.opt_dir), spec.python_version),
            "handler": handler,
            "event_file": str(sandbox.event_file),
            "result_file": str(sandbox.result_file),
            "request_id": request_id,
            "function_arn": f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function_name}",
            "timeout_ms": int(timeout * 1000),
        }
        returncode, timed_out = _run_bootstrap(
            interpreter, sandbox, config, env, init_timeout, timeout
        )
        return _outcome(spec, interpreter, sandbox, request_id, returncode, timed_out)
    finally:
        if keep:
            print(f"{PROG}: kept {work}", file=sys.stderr)
        else:
            remove_tree(work)


def _run_bootstrap(
    interpreter: Path,
    sandbox: Sandbox,
    config: dict[str, object],
    env: Mapping[str, str],
    init_timeout: float,
    timeout: float,
) -> tuple[int, tuple[str, float] | None]:
    """Run the bootstrap in the runtime's CPython; its exit status, and the phase and seconds it
    timed out after, if it did."""
    if not _can_drop_capabilities():
        print(
            f"{PROG}: warning: running as root without CAP_SETPCAP, so the task root is "
            "writable for the handler (file modes do not bind root)",
            file=sys.stderr,
        )
    sys.stderr.flush()
    status_read, status_write = os.pipe()
    bootstrap = sandbox.runtime_dir / _BOOTSTRAP.name
    try:
        arguments = json.dumps({**config, "status_fd": status_write})
        process = subprocess.Popen(
            [str(interpreter), "-I", "-B", str(bootstrap), arguments],
            cwd=sandbox.task_root,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=sys.stderr.fileno(),
            pass_fds=(status_write,),
            start_new_session=True,
            preexec_fn=_drop_capabilities if os.geteuid() == 0 else None,
        )
    except OSError as e:
        os.close(status_read)
        raise InvokeError(f"cannot run {interpreter}: {e}") from None
    finally:
        os.close(status_write)
    try:
        timed_out = _wait(process, status_read, init_timeout, timeout)
    finally:
        os.close(status_read)
        _kill_group(process)
    return process.wait(), timed_out


def _outcome(
    spec: facts.Runtime,
    interpreter: Path,
    sandbox: Sandbox,
    request_id: str,
    returncode: int,
    timed_out: tuple[str, float] | None,
) -> tuple[int, str]:
    """The exit status and response Lambda would give for how the bootstrap ended."""
    if timed_out:
        phase, seconds = timed_out
        message = f"Task timed out after {seconds:.2f} seconds"
        if phase == "init":
            message = (
                f"Init phase (importing the handler module) timed out after {seconds:.2f} seconds"
            )
        print(f"{PROG}: {message}", file=sys.stderr)
        error = _error_payload(
            f"RequestId: {request_id} Error: {message}", "Sandbox.Timedout", request_id
        )
        return EXIT_FUNCTION_ERROR, error
    if returncode == _EXIT_WRONG_PYTHON and not sandbox.result_file.exists():
        major, minor = spec.python_version
        raise InvokeError(f"{interpreter} is not CPython {major}.{minor}")
    if not sandbox.result_file.exists():
        message = (
            f"RequestId: {request_id} Error: Runtime exited with error: "
            f"{_describe_exit(returncode)}"
        )
        print(f"{PROG}: {message}", file=sys.stderr)
        return EXIT_FUNCTION_ERROR, _error_payload(message, "Runtime.ExitError", request_id)
    result = json.loads(sandbox.result_file.read_text(encoding="utf-8"))
    text = json.dumps(result["payload"])
    return (EXIT_OK if result["status"] == "ok" else EXIT_FUNCTION_ERROR), text


def _find_interpreter(runtime: facts.Runtime) -> Path:
    try:
        return interpreters.find_interpreter(runtime)
    except interpreters.InterpreterNotFoundError as e:
        raise InvokeError(f"{e} Or pass its path with --python.") from None


def _error_payload(message: str, error_type: str, request_id: str) -> str:
    return json.dumps(
        {
            "errorMessage": message,
            "errorType": error_type,
            "requestId": request_id,
            "stackTrace": [],
        }
    )


def _wait(
    process: subprocess.Popen, status_fd: int, init_timeout: float, timeout: float
) -> tuple[str, float] | None:
    """Wait for init, then for the invoke; returns None, or (phase, limit) when a limit passed."""
    ready, _, _ = select.select([status_fd], [], [], init_timeout)
    if not ready:
        return ("init", init_timeout)
    if os.read(status_fd, 1) == b"":
        # The bootstrap ended during init (an import error, or it exited): nothing more to wait
        # for.
        process.wait()
        return None
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return ("invoke", timeout)
    return None


def _kill_group(process: subprocess.Popen) -> None:
    """End the handler and anything it started (its own session and process group)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Invoke a Lambda deployment package locally, as the AWS Lambda Python "
        "runtime would.",
        epilog=ENVIRONMENT_HELP
        + "\nExit status: 0 the handler returned (its JSON on stdout); 1 a function error "
        "(Lambda's\nerror payload on stdout); 2 nothing was invoked (the reason on stderr).\n",
    )
    parser.add_argument(
        "archive", type=Path, help="the deployment package (.zip), or an image's OCI layout"
    )
    parser.add_argument(
        "event",
        nargs="?",
        default=None,
        help="a JSON event file; standard input when omitted or `-`",
    )
    parser.add_argument(
        "--runtime",
        required=True,
        choices=sorted(facts.RUNTIMES, key=lambda name: facts.RUNTIMES[name].python_version),
    )
    parser.add_argument(
        "--handler", required=True, help="module.function, as Lambda's handler setting"
    )
    parser.add_argument(
        "--architecture", default=facts.DEFAULT_ARCHITECTURE, choices=sorted(facts.ARCHITECTURES)
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=facts.TIMEOUT.default,
        help=f"seconds (default {facts.TIMEOUT.default}, at most {facts.TIMEOUT.maximum})",
    )
    parser.add_argument(
        "--memory-size",
        type=int,
        default=facts.MEMORY_SIZE.default,
        help=f"MB (default {facts.MEMORY_SIZE.default}; reported, not enforced)",
    )
    parser.add_argument("--function-name", default="function")
    parser.add_argument("--region", default=DEFAULT_REGION)
    parser.add_argument(
        "--layer",
        action="append",
        type=Path,
        default=[],
        help="a layer .zip, extracted to the layer directory in order (repeatable)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="an extra environment variable; a bare NAME copies it from this environment "
        "(repeatable)",
    )
    parser.add_argument(
        "--python",
        type=Path,
        help="the interpreter to use instead of searching pyenv and "
        f"{', '.join(interpreters.DEFAULT_SEARCH_PATH)}",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the extracted directories for inspection"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_intermixed_args(argv)
    try:
        extra_env = parse_env_assignments(args.env, os.environ)
        event = read_event(args.event)
        status, response = invoke(
            args.archive,
            runtime=args.runtime,
            handler=args.handler,
            event=event,
            architecture=args.architecture,
            timeout=args.timeout,
            memory_size=args.memory_size,
            function_name=args.function_name,
            region=args.region,
            layers=args.layer,
            extra_env=extra_env,
            python=args.python,
            keep=args.keep,
        )
    except (InvokeError, EnvironmentVariableError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_NOT_INVOKED
    sys.stdout.write(response + "\n")
    sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
