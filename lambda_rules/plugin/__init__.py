"""The Pants glue: targets, subsystems, the `package` and `run` goals, and one module per step.

Every `Get` of the plugin lives in this package, and each rule delegates its decisions to the
Pants-free core above it (`lambda_rules.platforms`, `locks`, `actions`, `units`, `layers`,
`manifest`, `sbom`, the zipper). The steps run in this order, each owning its request and result
types:

    steps/wheels.py    requirements -> the locked wheels for the Lambda platform -> one unit each
    steps/stage.py     sources and distributions -> first-party code and distribution units
    steps/tool.py      the lambda-zip tool every later process runs
    steps/parts.py     each unit -> [its .pyc] -> a compressed part, cached per distribution
    steps/assemble.py  parts + first-party code -> the archive, its manifest and SBOM
    steps/layer_contents.py  a layer as a step of the functions deployed with it

`package.py` and `run.py` are the goals; `target_types.py` and `field_sets.py` what they read.
"""
