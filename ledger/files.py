"""Reading a file the user named, bounded: the one way the CLI and the library read input files.

Proof files, telemetry files for import, the home's config, key files: every one is read through
``read_bounded`` with a byte limit from ``ledger.limits``. A path that is not a regular file (a
device such as ``/dev/zero``, a FIFO, a socket, a directory) is refused before anything is read,
because its size says nothing about how much it will yield; a regular file is read to at most its
limit plus one byte, so a file that grows while it is read is refused too, never read without end.

Refusals are ``ValidationError`` naming the field, the path and the limit. Only ``OSError`` from the
operating system is turned into one; nothing here interprets the bytes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ledger.errors import ValidationError

READ_CHUNK_BYTES = 1 << 20  # one read() call: big enough to be cheap, small enough to stop near the limit


def read_bounded(path: str | Path, limit_bytes: int, *, field: str = "file", limit_name: str = "") -> bytes:
    """The whole of the regular file at ``path`` if it holds at most ``limit_bytes`` bytes.

    ``field`` names the input in the error (``file``, ``config``, ``key_file``...); ``limit_name`` is
    the ``ledger.limits`` constant, named in the error so the user knows which bound was hit."""
    p = str(path)
    bound = f"{limit_bytes:,}-byte limit" + (f" (limits.{limit_name})" if limit_name else "")
    try:
        # O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever before we can refuse it
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ValidationError(field, p, f"cannot be read: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValidationError(field, p, f"is not a regular file ({_kind(st.st_mode)}): only regular files are "
                                  f"read, up to the {bound}", limit=limit_bytes)
        if st.st_size > limit_bytes:
            raise ValidationError(field, p, f"is {st.st_size:,} bytes, larger than the {bound}",
                                  limit=limit_bytes, size=st.st_size)
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        got = 0
        while got <= limit_bytes:
            chunk = os.read(fd, min(READ_CHUNK_BYTES, limit_bytes + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit_bytes:  # it grew while we read it
            raise ValidationError(field, p, f"holds more than the {bound}", limit=limit_bytes)
        return b"".join(chunks)
    except OSError as e:
        raise ValidationError(field, p, f"cannot be read: {e.strerror or e}") from None
    finally:
        os.close(fd)


def read_text_bounded(path: str | Path, limit_bytes: int, *, field: str = "file", limit_name: str = "") -> str:
    """``read_bounded`` decoded as UTF-8 (a file that is not UTF-8 is a ``ValidationError`` naming it)."""
    data = read_bounded(path, limit_bytes, field=field, limit_name=limit_name)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValidationError(field, str(path), f"is not UTF-8 text (byte {e.start})") from None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


__all__ = ["read_bounded", "read_text_bounded"]
