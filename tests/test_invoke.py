"""The local Lambda invoker (lambda_rules/scripts/invoke.py and bootstrap.py), without Pants: real
zips, real interpreters, run from a directory laid out like the `pants run` sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Callable

import pytest

from lambda_rules import facts, sandbox_files
from lambda_rules.scripts import interpreters, invoke, lambda_environment
from lambda_rules.zipper import build_zip
from tests.conftest import REPO_ROOT, write_tree

SCRIPTS = REPO_ROOT / "lambda_rules" / "scripts"

# The test package's handlers.py is HANDLERS + FAILING_HANDLERS: handlers that report what they
# see, and handlers that fail, each in its own way.
HANDLERS = """
import json, os, sys, tempfile, time

import pkg.helper

ENV_NAMES = [
    "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "_HANDLER", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_REGION", "AWS_DEFAULT_REGION",
    "TZ", "LANG", "TMPDIR", "PATH", "FROM_TEST", "HOME",
]


def ok(event, context):
    print("a log line from the handler")
    return {
        "event": event,
        "helper": pkg.helper.VALUE,
        "env": {name: os.environ.get(name) for name in ENV_NAMES},
        "context": {
            name: getattr(context, name)
            for name in (
                "function_name", "function_version", "invoked_function_arn",
                "memory_limit_in_mb", "aws_request_id", "log_group_name", "log_stream_name",
                "client_context",
            )
        },
        "identity": context.identity.cognito_identity_id,
        "remaining": context.get_remaining_time_in_millis(),
        "sys_path": sys.path,
        "flags": [sys.flags.isolated, sys.flags.dont_write_bytecode, sys.flags.no_user_site],
        "cwd": os.getcwd(),
        "version": list(sys.version_info[:2]),
    }


def filesystem(event, context):
    task_root = os.environ["LAMBDA_TASK_ROOT"]
    outcome = {}
    for name, path in [("new_file", os.path.join(task_root, "new.txt")),
                       ("existing_file", os.path.join(task_root, "handlers.py"))]:
        try:
            with open(path, "a") as f:
                f.write("x")
            outcome[name] = "written"
        except OSError as e:
            outcome[name] = type(e).__name__
    with tempfile.NamedTemporaryFile("w", delete=False) as f:
        f.write("scratch")
    outcome["tmp_file"] = f.name
    outcome["tmp_readback"] = open(f.name).read()
    outcome["pycache"] = [d for d, _, _ in os.walk(task_root) if "__pycache__" in d]
    return outcome
"""

FAILING_HANDLERS = """
def boom(event, context):
    raise ValueError("bad order: " + event.get("why", "?"))


def sleepy(event, context):
    time.sleep(30)
    return "woke up"


def unserialisable(event, context):
    return {"x": object()}


def exits(event, context):
    sys.exit(3)
"""


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    (tree / "handlers.py").write_text(HANDLERS + FAILING_HANDLERS)
    (tree / "pkg").mkdir()
    (tree / "pkg" / "__init__.py").write_text("")
    (tree / "pkg" / "helper.py").write_text("VALUE = 42\n")
    (tree / "broken.py").write_text("def handler(event, context)\n    return 1\n")
    out = tmp_path_factory.mktemp("zip") / "function.zip"
    build_zip(tree, out)
    return out


def installed_runtimes() -> list[str]:
    found = []
    for name, runtime in facts.RUNTIMES.items():
        try:
            interpreters.find_interpreter(runtime)
        except interpreters.InterpreterNotFoundError:
            continue
        found.append(name)
    return found


RUNTIME = "python3.12"
Invoker = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """A copy of the files the `pants run` sandbox gets, and nothing else of ours."""
    return write_tree(tmp_path_factory.mktemp("sandbox"), sandbox_files.INVOKER.read())


def _entry_program(sandbox: Path) -> str:
    """What `pants run` runs: only the sandbox's files of ours are importable."""
    return sandbox_files.entry_program(sandbox_files.INVOKER_MODULE, (str(sandbox),))


@pytest.fixture
def run_invoker(sandbox: Path) -> Invoker:
    """Runs the invoker as `pants run` does: Pants' interpreter (3.9, like this one), isolated."""

    def run(
        package: Path,
        *args: str,
        handler: str = "handlers.ok",
        runtime: str = RUNTIME,
        stdin: str = "{}",
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(package), "--runtime", runtime, "--handler", handler, *args]
        return subprocess.run(
            [sys.executable, "-I", "-B", "-c", _entry_program(sandbox), *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "FROM_HOST": "1"},
        )

    return run


def test_response_context_environment_and_search_path(run_invoker, package, tmp_path):
    event = tmp_path / "event.json"
    event.write_text('{"order_id": "A1", "quantity": 3}')
    result = run_invoker(
        package,
        str(event),
        "--function-name",
        "orders",
        "--memory-size",
        "512",
        "--region",
        "eu-west-1",
        "--env",
        "FROM_TEST=yes",
    )
    assert result.returncode == 0, result.stderr
    # Only the response on stdout; the handler's print went to stderr.
    response = json.loads(result.stdout)
    assert "a log line from the handler" in result.stderr
    assert "a log line" not in result.stdout

    assert response["event"] == {"order_id": "A1", "quantity": 3}
    assert response["helper"] == 42
    env = response["env"]
    task_root = env["LAMBDA_TASK_ROOT"]
    assert env["_HANDLER"] == "handlers.ok"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "orders"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/orders"
    assert "[$LATEST]" in env["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["TZ"] == ":UTC" and env["LANG"] == "en_US.UTF-8"
    assert env["FROM_TEST"] == "yes"
    assert env["HOME"] is None  # the caller's environment is not passed on
    assert env["LAMBDA_RUNTIME_DIR"] and env["TMPDIR"]

    context = response["context"]
    assert context["function_name"] == "orders"
    assert context["function_version"] == "$LATEST"
    assert (
        context["invoked_function_arn"] == "arn:aws:lambda:eu-west-1:123456789012:function:orders"
    )
    assert context["memory_limit_in_mb"] == "512"
    assert len(context["aws_request_id"]) == 36
    assert context["log_group_name"] == "/aws/lambda/orders"
    assert context["client_context"] is None and response["identity"] is None
    assert 2000 < response["remaining"] <= 3000

    # Lambda's search path: task root, then layers, then the standard library only.
    sys_path = response["sys_path"]
    assert sys_path[0] == task_root
    layer_root = str(Path(task_root).parent / "opt")  # the run's stand-in for /opt
    assert sys_path[1:3] == facts.layer_sys_path(layer_root, (3, 12))
    assert sys_path[1].endswith("/opt/python/lib/python3.12/site-packages")
    assert sys_path[2].endswith("/opt/python")
    assert not [
        p for p in sys_path if p.endswith(("site-packages", "dist-packages")) and "/opt/" not in p
    ]
    assert "" not in sys_path and "." not in sys_path
    assert response["flags"] == [1, 1, 1]
    assert response["cwd"] == task_root
    assert response["version"] == [3, 12]


@pytest.mark.parametrize("runtime", installed_runtimes())
def test_bootstrap_runs_on_every_installed_runtime(run_invoker, package, runtime):
    result = run_invoker(package, "-", runtime=runtime, stdin='{"n": 1}')
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert response["event"] == {"n": 1}
    assert response["version"] == [3, int(runtime.split(".")[1])]


def test_task_root_is_read_only_tmpdir_is_writable_and_no_bytecode(run_invoker, package):
    result = run_invoker(package, handler="handlers.filesystem")
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["new_file"] == "PermissionError"
    assert outcome["existing_file"] == "PermissionError"
    assert outcome["tmp_readback"] == "scratch"
    assert not outcome["tmp_file"].startswith("/tmp/tmp")  # in the run's own scratch dir
    assert outcome["pycache"] == []
    # Everything is cleaned up afterwards.
    assert not Path(outcome["tmp_file"]).exists()


def test_handler_exception_is_reported_like_lambda(run_invoker, package):
    result = run_invoker(package, handler="handlers.boom", stdin='{"why": "no items"}')
    assert result.returncode == 1
    error = json.loads(result.stdout)
    assert set(error) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "bad order: no items"
    assert len(error["requestId"]) == 36
    assert error["stackTrace"] and "handlers.py" in error["stackTrace"][0]
    assert "in boom" in error["stackTrace"][-1]
    assert not any("bootstrap.py" in frame for frame in error["stackTrace"])
    assert "[ERROR] ValueError: bad order: no items" in result.stderr


@pytest.mark.parametrize(
    "handler, error_type, message",
    [
        (
            "missing_module.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'missing_module': No module named 'missing_module'",
        ),
        ("handlers.nope", "Runtime.HandlerNotFound", "Handler 'nope' missing on module 'handlers'"),
        ("handlers", "Runtime.MalformedHandlerName", "Bad handler 'handlers'"),
        ("broken.handler", "Runtime.UserCodeSyntaxError", "Syntax error in module 'broken'"),
        (
            "handlers.unserialisable",
            "Runtime.MarshalError",
            "Unable to marshal response: Object of type object is not JSON serializable",
        ),
    ],
)
def test_runtime_errors(run_invoker, package, handler, error_type, message):
    result = run_invoker(package, handler=handler)
    assert result.returncode == 1, result.stderr
    error = json.loads(result.stdout)
    assert error["errorType"] == error_type
    assert error["errorMessage"].startswith(message)


def test_runtime_exit_is_an_error(run_invoker, package):
    result = run_invoker(package, handler="handlers.exits")
    assert result.returncode == 1
    error = json.loads(result.stdout)
    assert error["errorType"] == "Runtime.ExitError"
    assert "Runtime exited with error: exit status 3" in error["errorMessage"]


def test_timeout_stops_the_handler(run_invoker, package):
    started = time.monotonic()
    result = run_invoker(package, "--timeout", "1", handler="handlers.sleepy")
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert elapsed < 15
    assert "Task timed out after 1.00 seconds" in result.stderr
    error = json.loads(result.stdout)
    assert error["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in error["errorMessage"]
    assert "woke up" not in result.stdout


def test_event_from_stdin_without_argument(run_invoker, package):
    result = run_invoker(package, stdin='{"from": "stdin"}')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["event"] == {"from": "stdin"}


@pytest.mark.parametrize(
    "content, message",
    [
        (
            "{not json",
            "is not JSON: Expecting property name enclosed in double quotes at line 1 column 2",
        ),
        ("", "is empty"),
    ],
)
def test_bad_event_file_is_a_clear_error(run_invoker, package, tmp_path, content, message):
    event = tmp_path / "event.json"
    event.write_text(content)
    result = run_invoker(package, str(event))
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"event file {event} {message}" in result.stderr


def test_missing_event_file_is_a_clear_error(run_invoker, package, tmp_path):
    result = run_invoker(package, str(tmp_path / "nope.json"))
    assert result.returncode == 2 and result.stdout == ""
    assert f"event file {tmp_path / 'nope.json'} does not exist" in result.stderr


def test_bad_event_on_stdin(run_invoker, package):
    result = run_invoker(package, "-", stdin="[1, 2")
    assert result.returncode == 2
    assert "the event on standard input is not JSON" in result.stderr


def test_unsafe_or_unreadable_package_is_not_invoked(run_invoker, tmp_path):
    unsafe = tmp_path / "unsafe.zip"
    with zipfile.ZipFile(unsafe, "w") as zf:
        zf.writestr("handlers.py", "def ok(event, context):\n    return 1\n")
        zf.writestr("../escaped.py", "")
    result = run_invoker(unsafe)
    assert result.returncode == 2 and result.stdout == ""
    assert "unsafe path in archive: '../escaped.py'" in result.stderr
    assert not (tmp_path.parent / "escaped.py").exists()

    (tmp_path / "not-a.zip").write_text("hello")
    result = run_invoker(tmp_path / "not-a.zip")
    assert result.returncode == 2 and result.stdout == ""
    assert f"cannot read {tmp_path / 'not-a.zip'}" in result.stderr


def test_foreign_architecture_is_refused(run_invoker, package):
    foreign = "arm64" if invoke.host_machine() == "x86_64" else "x86_64"
    result = run_invoker(package, "--architecture", foreign)
    assert result.returncode == 2 and result.stdout == ""
    assert f"the function is built for {foreign}" in result.stderr
    assert "no emulator" in result.stderr


def test_arm64_refused_on_x86_64():
    with pytest.raises(
        invoke.InvokeError, match=r"built for arm64 \(aarch64\), and this machine is x86_64"
    ):
        invoke.check_architecture("arm64", machine="x86_64")
    invoke.check_architecture("x86_64", machine="x86_64")


@pytest.mark.skipif("python3.14" in installed_runtimes(), reason="CPython 3.14 is installed here")
def test_missing_interpreter_from_the_command_line(run_invoker, package):
    result = run_invoker(package, runtime="python3.14")
    assert result.returncode == 2 and result.stdout == ""
    assert "no CPython 3.14 for the python3.14 runtime" in result.stderr
    assert "pyenv install 3.14" in result.stderr and "--python" in result.stderr


def test_python_option_overrides_the_search(run_invoker, package, tmp_path):
    """`--python` is used as given (no search), and the bootstrap still refuses a wrong version."""
    python312 = interpreters.find_interpreter(facts.RUNTIMES["python3.12"])
    python311 = interpreters.find_interpreter(facts.RUNTIMES["python3.11"])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "python").symlink_to(python312)
    result = run_invoker(package, "--python", str(tmp_path / "mine" / "python"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["version"] == [3, 12]

    result = run_invoker(package, "--python", str(python311))
    assert result.returncode == 2 and result.stdout == ""
    assert f"{python311} is not CPython 3.12" in result.stderr


def test_scripts_are_python_3_9_and_the_bootstrap_imports_nothing_of_ours():
    """Pants 2.17 runs the invoker on CPython 3.9, the oldest runtime runs bootstrap.py and the
    bytecode compiler: all compile there. bootstrap.py, copied alone into the runtime directory,
    imports only the stdlib (tests/test_sandbox_files.py checks what the others import)."""
    python39 = interpreters.find_interpreter(facts.RUNTIMES["python3.9"])
    program = (
        "import ast, json, sys\n"
        "imports = {}\n"
        "for path in sys.argv[1:]:\n"
        "    tree = ast.parse(open(path, 'rb').read(), path)\n"
        "    compile(tree, path, 'exec', dont_inherit=True)\n"
        "    nodes = list(ast.walk(tree))\n"
        "    imports[path] = sorted(\n"
        "        {a.name for n in nodes if isinstance(n, ast.Import) for a in n.names}\n"
        "        | {n.module for n in nodes if isinstance(n, ast.ImportFrom) and n.module}\n"
        "    )\n"
        "print(json.dumps(imports))\n"
    )
    files = sorted(str(p) for p in [*SCRIPTS.glob("*.py"), REPO_ROOT / "lambda_rules/facts.py"])
    assert str(SCRIPTS / "bootstrap.py") in files
    out = subprocess.run(
        [str(python39), "-I", "-S", "-B", "-c", program, *files],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    imports = json.loads(out)
    modules = imports[str(SCRIPTS / "bootstrap.py")]
    assert modules and not [m for m in modules if m.startswith("lambda_rules")], modules


def test_extra_environment(run_invoker, package):
    result = run_invoker(package, "--env", "AWS_REGION=x")
    assert result.returncode == 2 and "AWS_REGION is reserved" in result.stderr
    extra = lambda_environment.parse_env_assignments(
        ["A=1", "FROM_HOST", "ABSENT"], {"FROM_HOST": "h"}
    )
    assert extra == {"A": "1", "FROM_HOST": "h"}


USES_LAYER = """
import os, subprocess

import layer_mod, both


def handler(event, context):
    return {
        "where": layer_mod.WHERE,
        "both": both.WHERE,
        "layer_root": os.path.dirname(os.path.dirname(layer_mod.__file__)),
        "path": os.environ["PATH"].split(":"),
        "ld_library_path": os.environ["LD_LIBRARY_PATH"].split(":"),
        "tool": subprocess.run(["layer-tool"], capture_output=True, text=True).stdout.strip(),
    }
"""


def test_layers_are_on_the_search_path(run_invoker, package, tmp_path):
    layer_tree = tmp_path / "layer"
    site_packages = layer_tree / "python/lib/python3.12/site-packages"
    site_packages.mkdir(parents=True)
    (layer_tree / "python" / "layer_mod.py").write_text("WHERE = 'layer'\n")
    # In both layer directories: site-packages comes first on Lambda's sys.path.
    (layer_tree / "python" / "both.py").write_text("WHERE = 'python'\n")
    (site_packages / "both.py").write_text("WHERE = 'site-packages'\n")
    (layer_tree / "bin").mkdir()
    (layer_tree / "bin" / "layer-tool").write_text("#!/bin/sh\necho from the layer bin\n")
    (layer_tree / "bin" / "layer-tool").chmod(0o755)
    layer = tmp_path / "layer.zip"
    build_zip(layer_tree, layer)
    function_tree = tmp_path / "function"
    function_tree.mkdir()
    (function_tree / "uses_layer.py").write_text(USES_LAYER)
    function = tmp_path / "function.zip"
    build_zip(function_tree, function)
    result = run_invoker(function, "--layer", str(layer), handler="uses_layer.handler")
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert response["where"] == "layer" and response["both"] == "site-packages"
    # Lambda's /opt/bin and /opt/lib are the run's layer directory, as /opt is.
    layer_root = response["layer_root"]
    assert response["path"][-1] == f"{layer_root}/bin"
    assert response["ld_library_path"][-1] == f"{layer_root}/lib"
    assert response["tool"] == "from the layer bin"


def test_function_name_from_address():
    assert lambda_environment.function_name_for("fn:lambda") == "fn-lambda"
    name = lambda_environment.function_name_for("a/b:c@runtime=python3.12")
    assert name == "a-b-c-runtime-python3-12"
