"""The Pants rules' wheel step: fetch the locked wheels a target needs (into the named wheel
cache) and write one unit per wheel (`wheel_units.write_units`).

    --wheels FILE       JSON: [{"url": ..., "sha256": ...}, ...], chosen from the lock by the rule
    --cache DIR         the content-addressed wheel cache (`fetch.WheelCache`)
    --out DIR           units.json, each unit's stored archive as pieces, the dist-info files
    --unit-cache DIR    units kept by their wheel (`unit_cache.UnitCache`): a wheel laid out
                        before, by any target, is not read again
    --installed         instead, each wheel installed in `DIR/<wheel filename>/` (the tool's own
                        requirements, from its lock)

A bad wheel or a failed download is one line on stderr and exit status 1, with nothing in --out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from lambda_rules import fetch, wheel_units
from lambda_rules.errors import LambdaRulesError
from lambda_rules.unit_cache import UnitCache


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unpack_wheels.py", description=__doc__.split("\n")[0])
    parser.add_argument("--wheels", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--installed", action="store_true")
    parser.add_argument("--unit-cache", type=Path)
    args = parser.parse_args(argv)
    wanted = [fetch.Wanted(w["url"], w["sha256"]) for w in json.loads(args.wheels.read_text())]
    wheel_cache = fetch.WheelCache(args.cache)
    try:
        if args.installed:
            paths = wheel_cache.fetch_all(wanted)
            shown = [(paths[w.sha256], fetch.shown_url(w.url)) for w in wanted]
            wheel_units.install_each(shown, args.out)
        else:
            unit_cache = UnitCache(args.unit_cache) if args.unit_cache else None
            wheel_units.write_units(wanted, wheel_cache, args.out, unit_cache=unit_cache)
    except LambdaRulesError as error:
        shutil.rmtree(args.out, ignore_errors=True)
        sys.stderr.write(f"lambda_rules: {error}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
