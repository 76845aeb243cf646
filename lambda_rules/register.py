"""Pants backend entry point: `backend_packages = ["lambda_rules"]`."""

from lambda_rules import rules as lambda_rules
from lambda_rules import run_rules
from lambda_rules.target_types import LambdaFunctionTarget, LambdaLayerTarget


def target_types():
    return [LambdaFunctionTarget, LambdaLayerTarget]


def rules():
    return [*lambda_rules.rules(), *run_rules.rules()]
