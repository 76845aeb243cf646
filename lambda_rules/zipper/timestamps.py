"""The one timestamp every entry carries, as MS-DOS date and time fields.

ZIP stores local wall-clock time with 2-second resolution and no zone. We
interpret epochs in UTC by plain arithmetic (never the local TZ database), so
the same epoch gives the same bytes on every host.
"""

from __future__ import annotations

import datetime
from typing import Mapping

from lambda_rules.zipper.errors import ZipError

DOS_EPOCH = 315532800
"""1980-01-01 00:00:00 UTC, the earliest time the DOS date field can hold."""

DOS_MAX = 4354819198
"""2107-12-31 23:59:58 UTC, the latest time the DOS date field can hold."""

_UNIX_EPOCH = datetime.datetime(1970, 1, 1)


def dos_date_time(epoch: int) -> tuple[int, int]:
    """Return (dos_date, dos_time) for `epoch`, clamped to the DOS range, odd seconds rounded
    down."""
    clamped = min(max(epoch, DOS_EPOCH), DOS_MAX)
    moment = _UNIX_EPOCH + datetime.timedelta(seconds=clamped)
    dos_date = ((moment.year - 1980) << 9) | (moment.month << 5) | moment.day
    dos_time = (moment.hour << 11) | (moment.minute << 5) | (moment.second // 2)
    return dos_date, dos_time


def describe_dos_date_time(dos_date: int, dos_time: int) -> str:
    """Human form of DOS date/time fields, for diff output."""
    return "%04d-%02d-%02d %02d:%02d:%02d" % (
        1980 + (dos_date >> 9),
        (dos_date >> 5) & 0xF,
        dos_date & 0x1F,
        dos_time >> 11,
        (dos_time >> 5) & 0x3F,
        (dos_time & 0x1F) * 2,
    )


def parse_epoch(text: str, source: str) -> int:
    """Parse an integer epoch given by the user; `source` names where it came from."""
    try:
        return int(text.strip())
    except ValueError:
        raise ZipError(
            f"{source} must be an integer number of seconds since 1970-01-01 UTC, got {text!r}"
        ) from None


def timestamp_from_environment(environ: Mapping[str, str]) -> int | None:
    """The epoch from SOURCE_DATE_EPOCH (reproducible-builds.org convention), if set."""
    value = environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return None
    return parse_epoch(value, "SOURCE_DATE_EPOCH")
