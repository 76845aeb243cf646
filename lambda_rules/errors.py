"""The base of every error that bad input causes, as opposed to a bug (standard library only).

Each subclass says what kind of problem it is (`staging.StagingError`,
`layers.LayerError`, `locks.LockError`, `sbom_identity.SbomError`, ...), and its message
names the target, file or requirement and what to do, so a command line prints it as one line
instead of a traceback. The zipper, which imports nothing of ours, has its own base,
`lambda_rules.zipper.errors.ZipError`.
"""

from __future__ import annotations


class LambdaRulesError(Exception):
    """Bad input to lambda_rules; the message says what is wrong and what to do."""
