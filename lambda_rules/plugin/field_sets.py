"""What the `package` and `run` goals read from `lambda_function`, `lambda_layer` and
`lambda_image` targets."""

from __future__ import annotations

from dataclasses import dataclass

from pants.backend.python.target_types import PythonResolveField
from pants.core.goals.package import PackageFieldSet

from lambda_rules.platforms import LambdaPlatform, lambda_platform
from lambda_rules.plugin.target_types import (
    LambdaArchitectureField,
    LambdaCompileBytecodeField,
    LambdaExcludeDistributionsField,
    LambdaFunctionHandlerField,
    LambdaFunctionOutputPathField,
    LambdaImageOutputPathField,
    LambdaLayerDependencies,
    LambdaLayerOutputPathField,
    LambdaLayersField,
    LambdaRuntimeField,
)


class _OnPlatform:
    """A field set's Lambda platform, from its runtime and architecture fields."""

    runtime: LambdaRuntimeField
    architecture: LambdaArchitectureField

    @property
    def platform(self) -> LambdaPlatform:
        return lambda_platform(self.runtime.value, self.architecture.value)


@dataclass(frozen=True)
class LambdaFunctionFieldSet(_OnPlatform, PackageFieldSet):
    # The output path tells a `lambda_function` from a `lambda_image`, which has a handler too.
    required_fields = (
        LambdaFunctionOutputPathField,
        LambdaFunctionHandlerField,
        LambdaRuntimeField,
    )

    handler: LambdaFunctionHandlerField
    runtime: LambdaRuntimeField
    architecture: LambdaArchitectureField
    resolve: PythonResolveField
    output_path: LambdaFunctionOutputPathField
    compile_bytecode: LambdaCompileBytecodeField
    layers: LambdaLayersField
    exclude_distributions: LambdaExcludeDistributionsField


@dataclass(frozen=True)
class LambdaLayerFieldSet(_OnPlatform, PackageFieldSet):
    required_fields = (LambdaLayerDependencies, LambdaRuntimeField)

    runtime: LambdaRuntimeField
    architecture: LambdaArchitectureField
    resolve: PythonResolveField
    output_path: LambdaLayerOutputPathField
    compile_bytecode: LambdaCompileBytecodeField
    exclude_distributions: LambdaExcludeDistributionsField


@dataclass(frozen=True)
class LambdaImageFieldSet(_OnPlatform, PackageFieldSet):
    required_fields = (LambdaImageOutputPathField, LambdaFunctionHandlerField, LambdaRuntimeField)

    handler: LambdaFunctionHandlerField
    runtime: LambdaRuntimeField
    architecture: LambdaArchitectureField
    resolve: PythonResolveField
    output_path: LambdaImageOutputPathField
    compile_bytecode: LambdaCompileBytecodeField
    exclude_distributions: LambdaExcludeDistributionsField
