"""`[lambda-base-images]`: where the base images of `lambda_image` targets are, per runtime and
architecture (outside the repository: a base is hundreds of MB)."""

from __future__ import annotations

from pants.option.option_types import DictOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import softwrap

from lambda_rules.platforms import LambdaPlatform


def base_key(platform: LambdaPlatform) -> str:
    """The key of `[lambda-base-images].layouts` for a platform: `python3.12/x86_64`."""
    return f"{platform.runtime.name}/{platform.architecture}"


class LambdaBaseImagesSubsystem(Subsystem):
    options_scope = "lambda-base-images"
    help = "The base images that `lambda_image` targets are built on."

    layouts = DictOption[str](
        help=softwrap(
            """
            The base image of each runtime and architecture, as an OCI image layout on this
            machine pinned by its manifest's digest: `{"python3.12/x86_64":
            "/srv/lambda-bases/python3.12@sha256:..."}`. A relative path is relative to the
            build root; `~` is expanded. Copy a base once from AWS's image, e.g. `skopeo copy
            docker://public.ecr.aws/lambda/python:3.12@sha256:... oci:/srv/lambda-bases/python3.12`
            (`--override-arch arm64` for arm64), and pin what `skopeo inspect
            oci:/srv/lambda-bases/python3.12` prints as `Digest`. Every blob is checked against
            the pin when read, and the image step's cache key holds the base's content, not its
            path: CI machines share images built on any copy of the same base.
            """
        ),
    )
