"""Run inside the pinned pex PEX (`PEX_INTERPRETER=1 python pex.pex pex_selection.py ...`): prints,
as JSON, the wheel file of each distribution pex itself chooses from a lock for each complete
platform (pex's own `LockedResolve.resolve`, what `pex3 venv create --lock` does before it
downloads, with `--no-build`), or the error pex gives.

    pex_selection.py LOCK.json PLATFORMS.json REQUIREMENT...
    PLATFORMS.json: {"<name>": <complete platform>, ...}
"""

import json
import sys

from pex.pep_425 import CompatibilityTags
from pex.pep_508 import MarkerEnvironment
from pex.requirements import parse_requirement_string
from pex.resolve.lockfile import json_codec
from pex.resolve.resolver_configuration import BuildConfiguration
from pex.targets import CompletePlatform


def choose(lock, platform, requirements):
    target = CompletePlatform.create(
        MarkerEnvironment(**platform["marker_environment"]),
        CompatibilityTags.from_strings(platform["compatible_tags"]),
    )
    error = None
    for locked_resolve in lock.locked_resolves:
        # --no-build, as lambda_rules resolves: wheels only.
        resolved = locked_resolve.resolve(
            target, requirements, build_configuration=BuildConfiguration.create(allow_builds=False)
        )
        if not hasattr(resolved, "downloadable_artifacts"):
            error = str(resolved)
            continue
        return {
            str(a.project_name.normalized): a.artifact.url.download_url.rsplit("/", 1)[-1]
            for a in resolved.downloadable_artifacts
        }
    return {"error": error}


def main(lock_path, platforms_path, *requirements):
    lock = json_codec.load(lock_path)
    with open(platforms_path) as f:
        platforms = json.load(f)
    parsed = [parse_requirement_string(r).requirement for r in requirements]
    chosen = {name: choose(lock, platform, parsed) for name, platform in platforms.items()}
    print(json.dumps(chosen, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
