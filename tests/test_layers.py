"""Layers and exclusions (lambda_rules/layers.py), on the METADATA of real wheels from PyPI."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import BytesParser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from lambda_rules.facts import UNZIPPED_LIMIT_BYTES
from lambda_rules.layers import (
    CombinedSizeError,
    LayerContents,
    LayerError,
    combined_size_check,
    direct_requirement_names,
    excluded_closure,
    first_party_coverage,
    layer_coverage,
    layer_manifest_entries,
    requirement_graph,
)
from lambda_rules.manifest import PackageTooLargeError
from lambda_rules.platforms import lambda_platform
from tests.conftest import REPO_ROOT

WHEEL_CACHE = REPO_ROOT / ".cache" / "layers-wheels"

# What boto3 and pydantic resolve to for python3.12 on x86_64 (pydantic as in python-default).
WHEELS = {
    "boto3": "1.44.5",
    "botocore": "1.44.5",
    "s3transfer": "0.19.3",
    "jmespath": "1.1.0",
    "python-dateutil": "2.9.0.post0",
    "six": "1.17.0",
    "urllib3": "2.8.0",
    "requests": "2.34.2",
    "certifi": "2026.10.18",
    "idna": "3.20",
    "charset-normalizer": "3.5.2",
    "pydantic": "2.12.5",
    "pydantic-core": "2.41.5",
    "typing-extensions": "4.16.0",
    "annotated-types": "0.7.0",
    "typing-inspection": "0.4.2",
}
BOTO3 = {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
REQUESTS = {"requests", "certifi", "idna", "charset-normalizer", "urllib3"}
PYDANTIC = {
    "pydantic",
    "pydantic-core",
    "typing-extensions",
    "annotated-types",
    "typing-inspection",
}

PY312 = lambda_platform("python3.12", "x86_64")
ENV = PY312.marker_environment()


def _cached_wheels() -> dict[str, Path]:
    found = {}
    for wheel in WHEEL_CACHE.glob("*.whl"):
        name, version = wheel.name.split("-")[:2]
        if WHEELS.get(canonicalize_name(name)) == version:
            found[canonicalize_name(name)] = wheel
    return found


@pytest.fixture(scope="session")
def metadata() -> dict[str, bytes]:
    """Each pinned wheel's METADATA, downloaded once into the repository's .cache/."""
    missing = sorted(set(WHEELS) - set(_cached_wheels()))
    if missing:
        WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "pip", "download", "--isolated", "--disable-pip-version-check",
            "--quiet", "--no-deps", "--only-binary=:all:", "--platform", "manylinux2014_x86_64",
            "--python-version", "3.12", "--dest", str(WHEEL_CACHE),
            *(f"{name}=={WHEELS[name]}" for name in missing),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            pytest.fail(f"cannot download the test wheels ({' '.join(missing)}):\n{result.stderr}")
    wheels = _cached_wheels()
    assert sorted(wheels) == sorted(WHEELS)
    contents = {}
    for name, wheel in wheels.items():
        with zipfile.ZipFile(wheel) as zf:
            (path,) = [
                p for p in zf.namelist() if p.count("/") == 1 and p.endswith(".dist-info/METADATA")
            ]
            contents[name] = zf.read(path)
    return contents


@pytest.fixture(scope="session")
def graph(metadata) -> dict[str, set[str]]:
    return requirement_graph(metadata, ENV)


def bundle(graph: dict[str, set[str]], *names: str) -> dict[str, set[str]]:
    """The part of the graph a package holding exactly `names` would have."""
    chosen = set(names)
    return {name: graph[name] & chosen for name in chosen}


# --- what a distribution requires on the Lambda platform -------------------------------------


def requirements_of(metadata: bytes, environment, extras=()) -> set[str]:
    """The edges `requirement_graph` gives a distribution when everything it could require is
    bundled too (as empty distributions), and the package asks for `extras`."""
    message = BytesParser().parsebytes(metadata)
    name = canonicalize_name(message["Name"])
    possible = {
        canonicalize_name(Requirement(value).name) for value in message.get_all("Requires-Dist", [])
    } - {name}
    bundle = {
        name: metadata,
        **{
            other: f"Metadata-Version: 2.1\nName: {other}\nVersion: 1\n".encode()
            for other in possible
        },
    }
    root = f"{name}[{','.join(extras)}]" if extras else name
    return requirement_graph(bundle, environment, [root])[name]


def test_requirements_of_real_metadata_leave_out_extras_and_foreign_markers(metadata):
    assert requirements_of(metadata["boto3"], ENV) == {"botocore", "jmespath", "s3transfer"}
    assert requirements_of(metadata["botocore"], ENV) == {"jmespath", "python-dateutil", "urllib3"}
    assert requirements_of(metadata["s3transfer"], ENV) == {"botocore"}
    assert requirements_of(metadata["python-dateutil"], ENV) == {"six"}
    assert requirements_of(metadata["urllib3"], ENV) == set()  # brotli, h2, socks, zstd: extras
    assert requirements_of(metadata["requests"], ENV) == {
        "charset-normalizer", "idna", "urllib3", "certifi"
    }  # fmt: skip
    # email-validator and tzdata (Windows, extra "timezone") are not needed on Lambda.
    assert requirements_of(metadata["pydantic"], ENV) == PYDANTIC - {"pydantic"}
    assert requirements_of(metadata["pydantic-core"], ENV) == {"typing-extensions"}


def test_requirements_of_with_extras(metadata):
    assert requirements_of(metadata["botocore"], ENV, extras=["crt"]) == {
        "jmespath", "python-dateutil", "urllib3", "awscrt"
    }  # fmt: skip
    # `use-chardet-on-py3` is spelled with dashes in the marker; asked for in any spelling.
    assert "chardet" in requirements_of(metadata["requests"], ENV, extras=["use_chardet_on_py3"])
    # urllib3[brotli] wants brotli on CPython, brotlicffi elsewhere.
    assert requirements_of(metadata["urllib3"], ENV, extras=["brotli"]) == {"brotli"}


def test_markers_are_evaluated_for_the_lambda_platform():
    metadata = (
        b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"
        b'Requires-Dist: only-arm; platform_machine == "aarch64"\n'
        b'Requires-Dist: Old_Backport (>=1.0) ; python_version < "3.11"\n'
        b'Requires-Dist: windows-only; sys_platform == "win32"\n'
        b"Requires-Dist: Always.There>=2\n"
    )
    assert requirements_of(metadata, ENV) == {"always-there"}
    arm39 = lambda_platform("python3.9", "arm64").marker_environment()
    assert requirements_of(metadata, arm39) == {"always-there", "only-arm", "old-backport"}


def test_unparsable_requirement_names_the_distribution():
    metadata = b"Metadata-Version: 2.1\nName: broken\nVersion: 1.0\nRequires-Dist: foo >= >= 1\n"
    with pytest.raises(LayerError, match="METADATA of broken.*foo >= >= 1"):
        requirement_graph({"broken": metadata}, ENV)


def test_direct_requirement_names():
    assert direct_requirement_names(
        ["Boto3>=1.30", "urllib3[socks]", 'backport; python_version < "3.10"'], ENV
    ) == {"boto3", "urllib3"}


def test_requirement_graph_follows_extras_asked_for(metadata):
    foo = b"Name: foo\nVersion: 1\nRequires-Dist: bar; extra == 'x'\nRequires-Dist: foo[y]; extra == 'all'\nRequires-Dist: baz; extra == 'y'\n"  # noqa: E501
    uses_foo = b"Name: uses-foo\nVersion: 1\nRequires-Dist: foo[all]\n"
    bar = baz = b"Name: bar\nVersion: 1\n"
    plain = {"foo": foo, "bar": bar, "baz": baz}
    assert requirement_graph(plain, ENV)["foo"] == set()
    assert requirement_graph(plain, ENV, ["foo[x]"])["foo"] == {"bar"}
    # Extras asked for by another distribution, through an extra that asks for another extra.
    assert requirement_graph({**plain, "uses-foo": uses_foo}, ENV)["foo"] == {"baz"}
    # Only bundled names are edges: botocore[crt]'s awscrt is not in the package.
    real = requirement_graph({n: metadata[n] for n in BOTO3}, ENV, ["boto3[crt]"])
    assert real["botocore"] == {"jmespath", "python-dateutil", "urllib3"}


# --- excluded_closure -----------------------------------------------------------------------


def test_excluding_boto3_drops_its_whole_closure_when_nothing_else_needs_it(graph):
    bundled = bundle(graph, *BOTO3, *PYDANTIC)
    dropped = excluded_closure("fn:fn", ["boto3"], bundled, roots={"boto3", "pydantic"})
    assert dropped == BOTO3


def test_urllib3_stays_when_another_bundled_distribution_needs_it(graph):
    bundled = bundle(graph, *BOTO3, *REQUESTS)
    dropped = excluded_closure("fn:fn", ["boto3"], bundled, roots={"boto3", "requests"})
    assert dropped == BOTO3 - {"urllib3"}


def test_urllib3_stays_when_the_function_requires_it_directly(graph):
    bundled = bundle(graph, *BOTO3)
    dropped = excluded_closure("fn:fn", ["boto3"], bundled, roots={"boto3", "urllib3"})
    assert dropped == BOTO3 - {"urllib3"}


def test_a_kept_distribution_keeps_what_it_needs_beyond_the_excluded_one(graph):
    # Only botocore goes: boto3 keeps jmespath and s3transfer, but python-dateutil, six and
    # urllib3 were needed through botocore alone.
    dropped = excluded_closure("fn:fn", ["botocore"], bundle(graph, *BOTO3), roots={"boto3"})
    assert dropped == {"botocore", "python-dateutil", "six", "urllib3"}


def test_an_excluded_name_goes_even_when_a_root_or_a_kept_distribution_needs_it(graph):
    dropped = excluded_closure(
        "fn:fn", ["urllib3"], bundle(graph, *REQUESTS), roots={"requests", "urllib3"}
    )
    assert dropped == {"urllib3"}


@pytest.mark.parametrize("spelling", ["Boto3", "BOTO3", "boto3"])
def test_excluded_names_are_normalised(graph, spelling):
    assert excluded_closure("fn:fn", [spelling], bundle(graph, *BOTO3), roots={"boto3"}) == BOTO3


@pytest.mark.parametrize("spelling", ["python_dateutil", "Python.Dateutil", "python-dateutil"])
def test_excluding_python_dateutil_in_any_spelling_takes_six_along(graph, spelling):
    dropped = excluded_closure("fn:fn", [spelling], bundle(graph, *BOTO3), roots={"boto3"})
    assert dropped == {"python-dateutil", "six"}


def test_nothing_excluded_drops_nothing(graph):
    assert excluded_closure("fn:fn", [], bundle(graph, *BOTO3), roots={"boto3"}) == set()


def test_cycles_terminate():
    bundled = {"a": {"b"}, "b": {"a", "c"}, "c": set(), "d": {"c"}}
    assert excluded_closure("fn:fn", ["a"], bundled, roots={"a"}) == {"a", "b"}
    assert excluded_closure("fn:fn", ["a"], bundled, roots={"a", "d"}) == {"a", "b"}
    assert excluded_closure("fn:fn", ["a", "d"], bundled, roots={"a", "d"}) == {"a", "b", "c", "d"}


def test_unknown_excluded_name_is_an_error_with_did_you_mean(graph):
    bundled = bundle(graph, *BOTO3, *PYDANTIC)
    with pytest.raises(LayerError) as error:
        excluded_closure("svc/orders:fn", ["boto3", "Botocor", "flask"], bundled, roots={"boto3"})
    message = str(error.value)
    assert message.startswith(
        "svc/orders:fn: `exclude_distributions` names distributions that the package does not "
        "hold: `Botocor` (did you mean `botocore` or `boto3`?), `flask`. It holds:"
    )  # `flask`: nothing close, no guess
    assert "It holds: annotated-types, boto3, botocore, jmespath, pydantic," in message
    assert "Fix the spelling" in message


def test_unknown_name_in_an_empty_package():
    with pytest.raises(
        LayerError, match=r"names a distribution that .*: `boto3`\. It holds: none\."
    ):
        excluded_closure("fn:fn", ["boto3"], {}, roots=set())


def test_unparsable_direct_requirement():
    with pytest.raises(LayerError, match="a requirement that cannot be parsed"):
        direct_requirement_names(["boto3 >= >= 1"], ENV)


# --- layers ---------------------------------------------------------------------------------


def make_layer(address="libs:deps", runtime="python3.12", architecture="x86_64", **kwargs):
    values = dict(
        distributions={name: WHEELS[name] for name in PYDANTIC},
        first_party={},
        unzipped_size=10_000_000,
        sha256_hex="ab" * 32,
        sha256_base64="q6ur",
    )
    values.update(kwargs)
    return LayerContents(address, runtime, architecture, **values)


FUNCTION_DISTRIBUTIONS = {**{name: WHEELS[name] for name in PYDANTIC}, "orjson": "3.11.5"}


def test_layer_coverage_leaves_out_what_layers_hold_at_the_same_version():
    covered = layer_coverage("fn:fn", PY312, FUNCTION_DISTRIBUTIONS, [make_layer()])
    assert covered == PYDANTIC
    # Names and versions compare canonically.
    layer = make_layer(distributions={"Typing_Extensions": "4.16", "annotated-types": "0.7"})
    function = {"typing-extensions": "4.16.0", "Annotated_Types": "0.7.0", "orjson": "3.11.5"}
    assert layer_coverage("fn:fn", PY312, function, [layer]) == {
        "typing-extensions", "annotated-types"
    }  # fmt: skip
    assert layer_coverage("fn:fn", PY312, FUNCTION_DISTRIBUTIONS, []) == set()


def test_layer_for_another_runtime_names_both_targets_and_both_runtimes():
    with pytest.raises(LayerError) as error:
        layer_coverage("svc:fn", PY312, FUNCTION_DISTRIBUTIONS, [make_layer(runtime="python3.11")])
    message = str(error.value)
    assert message.startswith("svc:fn: cannot use its layers:")
    assert "its layer libs:deps is built for python3.11 on x86_64" in message
    assert "svc:fn runs on python3.12 on x86_64" in message


def test_layer_for_another_architecture_names_both_targets_and_both_architectures():
    with pytest.raises(LayerError) as error:
        layer_coverage("svc:fn", PY312, FUNCTION_DISTRIBUTIONS, [make_layer(architecture="arm64")])
    assert "libs:deps is built for python3.12 on arm64" in str(error.value)
    assert "svc:fn runs on python3.12 on x86_64" in str(error.value)


def test_version_clash_names_the_distribution_both_versions_and_both_targets():
    layer = make_layer(distributions={**make_layer().distributions, "typing-extensions": "4.15.0"})
    with pytest.raises(LayerError) as error:
        layer_coverage("svc:fn", PY312, FUNCTION_DISTRIBUTIONS, [layer])
    message = str(error.value)
    assert (
        "it needs typing-extensions 4.16.0, but its layer libs:deps holds typing-extensions 4.15.0"
        in message
    )  # noqa: E501
    assert "pin one version of typing-extensions for both svc:fn and libs:deps" in message


def test_every_layer_problem_is_reported_at_once():
    clash = make_layer("libs:old", distributions={"pydantic": "2.11.0"})
    wrong_arch = make_layer("libs:arm", architecture="arm64", distributions={})
    with pytest.raises(LayerError) as error:
        layer_coverage("svc:fn", PY312, FUNCTION_DISTRIBUTIONS, [clash, wrong_arch])
    assert "libs:arm is built for python3.12 on arm64" in str(error.value)
    assert "pydantic 2.12.5, but its layer libs:old holds pydantic 2.11.0" in str(error.value)


def test_more_layers_than_lambda_allows():
    many = [make_layer(f"libs:l{i}", distributions={}) for i in range(6)]
    with pytest.raises(LayerError, match="uses 6 layers .*at most 5"):
        layer_coverage("svc:fn", PY312, {}, many)


def test_first_party_files_a_layer_holds_with_the_same_content_are_left_out():
    layer = make_layer(first_party={"shared/util.py": "1111", "shared/other.py": "2222"})
    function = {"app.py": "0000", "shared/util.py": "1111", "shared/other.py": "changed"}
    assert first_party_coverage(function, [layer]) == {"shared/util.py"}
    assert layer.first_party_paths == frozenset({"shared/util.py", "shared/other.py"})


def test_layer_contents_are_hashable_and_name_themselves_for_the_manifest():
    a, b = (
        make_layer(),
        make_layer(distributions=dict(reversed(list(make_layer().distributions.items())))),
    )
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a.distributions["pydantic"] == "2.12.5"
    assert [entry.to_json() for entry in layer_manifest_entries([a])] == [
        {"address": "libs:deps", "sha256": "ab" * 32, "filebase64sha256": "q6ur"}
    ]


def test_combined_size_within_the_limit_passes():
    combined_size_check("svc:fn", UNZIPPED_LIMIT_BYTES - 10_000_000, [make_layer()])


def test_combined_size_over_the_limit_names_every_part():
    big = make_layer("libs:big", unzipped_size=136_314_880)
    with pytest.raises(CombinedSizeError) as error:
        combined_size_check("svc:fn", 136_314_880, [big, make_layer()])
    assert isinstance(error.value, PackageTooLargeError)
    message = str(error.value)
    assert (
        f"unzip to 282,629,760 bytes together, above Lambda's limit of {UNZIPPED_LIMIT_BYTES:,}"
        in message
    )  # noqa: E501
    assert "svc:fn (function): 136,314,880 bytes" in message
    assert "libs:big (layer): 136,314,880 bytes" in message
    assert "libs:deps (layer): 10,000,000 bytes" in message


# --- paths ----------------------------------------------------------------------------------
