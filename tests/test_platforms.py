from __future__ import annotations

import json

import pytest
from packaging.tags import Tag
from packaging.utils import parse_wheel_filename

from lambda_rules.facts import RUNTIMES
from lambda_rules.platforms import UnknownPlatformError, lambda_platform


def wheel_fits(platform, filename: str) -> bool:
    _, _, _, wheel_tags = parse_wheel_filename(filename)
    compatible = set(platform.compatible_tags())
    return any(tag in compatible for tag in wheel_tags)


@pytest.mark.parametrize(
    "runtime, glibc_ok, glibc_too_new",
    [("python3.9", "2_26", "2_27"), ("python3.11", "2_26", "2_28"), ("python3.12", "2_34", "2_35")],
)
def test_glibc_ceiling_follows_the_amazon_linux_release(runtime, glibc_ok, glibc_too_new):
    platform = lambda_platform(runtime, "x86_64")
    cp = "cp" + runtime.replace("python", "").replace(".", "")
    assert wheel_fits(platform, f"x-1.0-{cp}-{cp}-manylinux_{glibc_ok}_x86_64.whl")
    assert not wheel_fits(platform, f"x-1.0-{cp}-{cp}-manylinux_{glibc_too_new}_x86_64.whl")


def test_legacy_manylinux_aliases_and_generic_tags_are_accepted():
    platform = lambda_platform("python3.10", "x86_64")
    assert wheel_fits(platform, "x-1.0-cp310-cp310-manylinux2014_x86_64.whl")
    assert wheel_fits(platform, "x-1.0-cp310-cp310-manylinux1_x86_64.whl")
    assert wheel_fits(platform, "x-1.0-cp37-abi3-manylinux_2_17_x86_64.whl")
    assert wheel_fits(platform, "x-1.0-py3-none-any.whl")


def test_wheels_for_other_pythons_architectures_and_systems_are_refused():
    platform = lambda_platform("python3.12", "arm64")
    assert wheel_fits(platform, "x-1.0-cp312-cp312-manylinux_2_17_aarch64.whl")
    assert not wheel_fits(platform, "x-1.0-cp312-cp312-manylinux_2_17_x86_64.whl")
    assert not wheel_fits(platform, "x-1.0-cp311-cp311-manylinux_2_17_aarch64.whl")
    assert not wheel_fits(platform, "x-1.0-cp312-cp312-musllinux_1_2_aarch64.whl")
    assert not wheel_fits(platform, "x-1.0-cp312-cp312-linux_aarch64.whl")
    assert not wheel_fits(platform, "x-1.0-cp312-cp312-macosx_11_0_arm64.whl")


def test_aarch64_tags_start_at_manylinux2014():
    tags = lambda_platform("python3.9", "arm64").platform_tags()
    assert tags[0] == "manylinux_2_26_aarch64"
    assert tags[-2:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]


def test_complete_platform_is_stable_json_with_the_runtime_markers():
    platform = lambda_platform("python3.13", "arm64")
    text = platform.complete_platform_json()
    assert text == lambda_platform("python3.13", "arm64").complete_platform_json()
    document = json.loads(text)
    assert document["marker_environment"]["python_version"] == "3.13"
    assert document["marker_environment"]["platform_machine"] == "aarch64"
    assert document["compatible_tags"][0] == "cp313-cp313-manylinux_2_34_aarch64"
    assert Tag("py3", "none", "any") in set(platform.compatible_tags())


def test_every_runtime_from_39_to_314_is_known():
    assert list(RUNTIMES) == [f"python3.{minor}" for minor in range(9, 15)]


@pytest.mark.parametrize("runtime, arch", [("python3.8", "x86_64"), ("python3.12", "aarch64")])
def test_unknown_runtime_or_architecture_is_refused_with_the_choices(runtime, arch):
    with pytest.raises(UnknownPlatformError, match="choose one of"):
        lambda_platform(runtime, arch)
