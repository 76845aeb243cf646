"""`package` on `lambda_function`, `lambda_layer` and `lambda_image`: the steps, in the order of
the data flow.

wheels -> stage -> (tool) -> parts -> assemble (a zip) or image (an OCI layout), each a module of
`lambda_rules.plugin.steps`.
"""

from __future__ import annotations

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.util_rules.faas import rules as faas_rules
from pants.core.goals.package import BuiltPackage, PackageFieldSet
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel

from lambda_rules.facts import Kind
from lambda_rules.plugin.field_sets import (
    LambdaFunctionFieldSet,
    LambdaImageFieldSet,
    LambdaLayerFieldSet,
)
from lambda_rules.plugin.heap import freeze_startup_heap
from lambda_rules.plugin.steps import (
    assemble,
    image,
    layer_contents,
    parts,
    stage,
    tool,
    verify,
    wheels,
)
from lambda_rules.plugin.steps.assemble import (
    AssembledLambda,
    AssembleLambdaRequest,
    UniqueOutputPath,
    UniqueOutputPathRequest,
)
from lambda_rules.plugin.steps.image import BuiltLambdaImage
from lambda_rules.plugin.steps.layer_contents import (
    BuiltLambdaLayer,
    LambdaFunctionLayers,
    LambdaFunctionLayersRequest,
)
from lambda_rules.plugin.steps.stage import StagedLambda, StageLambdaRequest
from lambda_rules.plugin.steps.tool import ZipperTool


@rule(desc="Package Lambda layer", level=LogLevel.DEBUG)
async def package_lambda_layer(field_set: LambdaLayerFieldSet) -> BuiltPackage:
    freeze_startup_heap()
    layer = await Get(BuiltLambdaLayer, LambdaLayerFieldSet, field_set)
    return layer.package


@rule(desc="Package Lambda image", level=LogLevel.DEBUG)
async def package_lambda_image(field_set: LambdaImageFieldSet) -> BuiltPackage:
    freeze_startup_heap()
    built = await Get(BuiltLambdaImage, LambdaImageFieldSet, field_set)
    return built.package


@rule(desc="Package Lambda function", level=LogLevel.DEBUG)
async def package_lambda_function(
    field_set: LambdaFunctionFieldSet, python_setup: PythonSetup
) -> BuiltPackage:
    freeze_startup_heap()
    platform = field_set.platform
    output_path = field_set.output_path.value_or_default(file_ending="zip")
    function_layers = await Get(LambdaFunctionLayers, LambdaFunctionLayersRequest(field_set))
    # The check reads every target of the repository (0.05-0.1 s with a hundred): beside the
    # staging, not before it.
    _, staged, _ = await MultiGet(
        Get(UniqueOutputPath, UniqueOutputPathRequest(field_set.address, output_path)),
        Get(
            StagedLambda,
            StageLambdaRequest(
                field_set.address,
                platform,
                tuple(field_set.exclude_distributions.value or ()),
                handler=field_set.handler,
                layers=tuple(layer.archive.contents for layer in function_layers.layers),
            ),
        ),
        # Built while the requirements resolve: on a fresh machine both wait on downloads.
        Get(ZipperTool),
    )
    assembled = await Get(
        AssembledLambda,
        AssembleLambdaRequest(
            field_set.address,
            Kind.FUNCTION,
            platform,
            staged,
            output_path,
            field_set.compile_bytecode.value,
            field_set.resolve.normalized_value(python_setup),
            tuple(layer.archive for layer in function_layers.layers),
        ),
    )
    return assembled.package


def rules():
    return (
        *collect_rules(),
        *wheels.rules(),
        *stage.rules(),
        *tool.rules(),
        *parts.rules(),
        *assemble.rules(),
        *layer_contents.rules(),
        *image.rules(),
        *verify.rules(),
        *faas_rules(),
        UnionRule(PackageFieldSet, LambdaFunctionFieldSet),
        UnionRule(PackageFieldSet, LambdaLayerFieldSet),
        UnionRule(PackageFieldSet, LambdaImageFieldSet),
    )
