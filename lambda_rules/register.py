"""Pants backend entry point: `backend_packages = ["lambda_rules"]`. The glue is in `plugin/`."""

from lambda_rules.plugin import package, run
from lambda_rules.plugin.target_types import (
    LambdaFunctionTarget,
    LambdaImageTarget,
    LambdaLayerTarget,
)


def target_types():
    return [LambdaFunctionTarget, LambdaLayerTarget, LambdaImageTarget]


def rules():
    return [*package.rules(), *run.rules()]
