"""Layers: a `lambda_layer` built as a step of the functions deployed with it.

A function names its layers in `layers` (addresses, not dependencies: a layer's requirements
must not join the function's resolve). Each layer is assembled like a function, with everything
under `python/`; the function then leaves out what its layers hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from pants.backend.python.subsystems.setup import PythonSetup
from pants.core.goals.package import BuiltPackage
from pants.engine.addresses import Addresses, UnparsedAddressInputs
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import Targets
from pants.util.logging import LogLevel

from lambda_rules import actions, layers
from lambda_rules.facts import Kind
from lambda_rules.plugin.field_sets import LambdaFunctionFieldSet, LambdaLayerFieldSet
from lambda_rules.plugin.steps.assemble import (
    AssembledLambda,
    AssembleLambdaRequest,
    UniqueOutputPath,
    UniqueOutputPathRequest,
)
from lambda_rules.plugin.steps.stage import StagedLambda, StageLambdaRequest
from lambda_rules.plugin.steps.tool import ZipperTool
from lambda_rules.plugin.steps.verify import LayerArchive


@dataclass(frozen=True)
class BuiltLambdaLayer:
    """A packaged layer, and what a function that uses it must know about it."""

    package: BuiltPackage
    archive: LayerArchive


@dataclass(frozen=True)
class LambdaFunctionLayersRequest:
    field_set: LambdaFunctionFieldSet


@dataclass(frozen=True)
class LambdaFunctionLayers:
    layers: tuple[BuiltLambdaLayer, ...]


@rule(desc="Build Lambda layer", level=LogLevel.DEBUG)
async def build_lambda_layer(
    field_set: LambdaLayerFieldSet, python_setup: PythonSetup
) -> BuiltLambdaLayer:
    platform = field_set.platform
    output_path = field_set.output_path.value_or_default(file_ending="zip")
    _, staged, _ = await MultiGet(
        Get(UniqueOutputPath, UniqueOutputPathRequest(field_set.address, output_path)),
        Get(
            StagedLambda,
            StageLambdaRequest(
                field_set.address,
                platform,
                tuple(field_set.exclude_distributions.value or ()),
                path_prefix=actions.package_prefix(Kind.LAYER),
            ),
        ),
        # Built while the requirements resolve: on a fresh machine both wait on downloads.
        Get(ZipperTool),
    )
    assembled = await Get(
        AssembledLambda,
        AssembleLambdaRequest(
            field_set.address,
            Kind.LAYER,
            platform,
            staged,
            output_path,
            field_set.compile_bytecode.value,
            field_set.resolve.normalized_value(python_setup),
        ),
    )
    contents = layers.LayerContents(
        address=str(field_set.address),
        runtime=platform.runtime.name,
        architecture=platform.architecture,
        distributions={d.name: d.version for d in staged.distributions},
        first_party=dict(staged.first_party_fingerprints),
        unzipped_size=assembled.unzipped_size,
        sha256_hex=assembled.sha256_hex,
        sha256_base64=assembled.sha256_base64,
    )
    return BuiltLambdaLayer(
        assembled.package,
        LayerArchive(contents, assembled.archive, output_path, assembled.package.digest),
    )


@rule(desc="Find a Lambda function's layers", level=LogLevel.DEBUG)
async def lambda_function_layers(request: LambdaFunctionLayersRequest) -> LambdaFunctionLayers:
    """`layers` are addresses, not dependencies: a layer's requirements must not join the
    function's resolve, only what it holds matters."""
    field_set = request.field_set
    addresses = await Get(
        Addresses,
        UnparsedAddressInputs(
            field_set.layers.value or (),
            owning_address=field_set.address,
            description_of_origin=f"the `layers` field of {field_set.address}",
        ),
    )
    targets = await Get(Targets, Addresses, addresses)
    not_layers = [str(t.address) for t in targets if not LambdaLayerFieldSet.is_applicable(t)]
    if not_layers:
        raise layers.LayerError(
            f"{field_set.address}: `layers` must name `lambda_layer` targets, but "
            f"{', '.join(not_layers)} is not one."
        )
    built = await MultiGet(
        Get(BuiltLambdaLayer, LambdaLayerFieldSet, LambdaLayerFieldSet.create(t)) for t in targets
    )
    return LambdaFunctionLayers(tuple(built))


def rules():
    return collect_rules()
