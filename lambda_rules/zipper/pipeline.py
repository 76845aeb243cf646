"""Compressing many entries in parallel while writing them strictly in order.

libdeflate's Python binding holds the GIL while compressing (measured: two
threads take as long as one), so parallelism needs processes. Workers read
their own input (a file, or a member of the source archive) and send back only
the payload, in batches to amortize inter-process overhead. A bounded window of
in-flight batches keeps memory to roughly MAX_IN_FLIGHT_BYTES plus the largest
single file. Results are consumed in submission order, so the archive bytes do
not depend on the worker count or on scheduling.

Workers are started with "spawn": safe even when the caller has threads (a
forked copy of a threaded process can deadlock), and the same on every OS.
"""

from __future__ import annotations

import os
import signal
from collections import deque
from typing import TYPE_CHECKING, Deque, Generator, Iterator, Protocol, Sequence, Tuple

from lambda_rules.zipper.compress import CompressedEntry, compress
from lambda_rules.zipper.errors import ZipError

if TYPE_CHECKING:
    from concurrent.futures import Future

BATCH_BYTES = 2 << 20
BATCH_ENTRIES = 256
MAX_IN_FLIGHT_BYTES = 64 << 20


class Content(Protocol):
    """Something whose bytes a worker can read by itself (it must pickle cheaply)."""

    @property
    def size(self) -> int: ...

    def read(self) -> bytes: ...


PARALLEL_MIN_BYTES = 8 << 20
"""Below this much input, starting worker processes costs more than it saves."""


def available_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_workers(workers: int | None, total_bytes: int, max_workers: int | None = None) -> int:
    """An explicit count is honoured; None means all CPUs (at most `max_workers`), or 1 for
    small inputs."""
    for flag, value in (("--workers", workers), ("--max-workers", max_workers)):
        if value is not None and value < 1:
            raise ZipError(f"{flag} must be at least 1, got {value}")
    if workers is not None:
        return workers
    if total_bytes < PARALLEL_MIN_BYTES:
        return 1
    return min(available_cpus(), max_workers or available_cpus())


def compress_all(
    items: Sequence[Content], level: int | None, workers: int
) -> Generator[CompressedEntry, None, None]:
    """Yield one CompressedEntry per item, in the order of `items`.

    Close the iterator (e.g. with contextlib.closing) to stop workers early.
    """
    if workers <= 1:
        for item in items:
            yield compress(item.read(), level)
        return
    yield from _compress_in_processes(_batches(items), level, workers)


def _batches(items: Sequence[Content]) -> Iterator[Tuple[Sequence[Content], int]]:
    batch_start = 0
    batch_bytes = 0
    for index, item in enumerate(items):
        batch_bytes += item.size
        if batch_bytes >= BATCH_BYTES or index + 1 - batch_start >= BATCH_ENTRIES:
            yield items[batch_start : index + 1], batch_bytes
            batch_start, batch_bytes = index + 1, 0
    if batch_start < len(items):
        yield items[batch_start:], batch_bytes


def _compress_batch(batch: Sequence[Content], level: int | None) -> list[CompressedEntry]:
    return [compress(item.read(), level) for item in batch]


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the parent, which cancels the pool and cleans up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _compress_in_processes(
    batches: Iterator[Tuple[Sequence[Content], int]], level: int | None, workers: int
) -> Iterator[CompressedEntry]:
    # Imported here: runs in one process (small parts, merges) skip their import time.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_ignore_interrupts,
    )
    window: Deque[Tuple[Future, int]] = deque()
    in_flight_bytes = 0
    try:
        while True:
            while len(window) < 2 * workers and (
                not window or in_flight_bytes < MAX_IN_FLIGHT_BYTES
            ):
                next_batch = next(batches, None)
                if next_batch is None:
                    break
                batch, batch_bytes = next_batch
                window.append((pool.submit(_compress_batch, batch, level), batch_bytes))
                in_flight_bytes += batch_bytes
            if not window:
                return
            future, batch_bytes = window.popleft()
            results = future.result()
            in_flight_bytes -= batch_bytes
            yield from results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
