"""The heap present when the first goal starts is frozen, once per process."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

PROGRAM = """
import gc
from lambda_rules.plugin.heap import freeze_startup_heap
gc.unfreeze()
assert gc.get_freeze_count() == 0
freeze_startup_heap()
first = gc.get_freeze_count()
later = [[n] for n in range(10_000)]  # objects a later run of the goal makes
freeze_startup_heap()
print(first, gc.get_freeze_count())
"""


def test_the_startup_heap_is_frozen_once_per_process():
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    first, second = map(int, result.stdout.split())
    assert first > 1000  # the interpreter's own heap, at least
    assert second == first  # a second goal in the same process (pantsd) freezes nothing more
