"""How our processes meet Pants' local and remote caches."""

from __future__ import annotations

from pants.engine.fs import Digest

# With a remote cache, Pants 2.17 starts each process locally at once in case the lookup is slow
# (the default delay is 0). Starting means materialising the inputs, which `validate` left remote:
# for the tool's compile step, hundreds of downloads racing the lookup, which then took 0.55 s
# instead of 0.06 s. A miss still starts the process the moment it is known; only a lookup slower
# than this waits.
REMOTE_CACHE_SPECULATION_DELAY_MILLIS = 1000


def linked_directories(prefix: str, digests: list[Digest]) -> dict[str, Digest]:
    """Shared archives (parts, layers) as immutable inputs, a sandbox directory each.

    Pants writes an immutable input to disk once per run (once per pantsd) and links it into each
    sandbox: ten functions on numpy and pandas, or every edit of one, do not copy the same 30 MB
    into a sandbox each time. One directory per archive: two archives' files may share a name.
    `prefix` is one no input file's path can start with.
    """
    return {f"{prefix}{index}": digest for index, digest in enumerate(digests)}
