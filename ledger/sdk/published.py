"""Checking what a processor published against its signed manifest, before anyone reads it.

``verify_published`` reads ``<home>/views/<processor>/_manifest.json`` (bounded), checks its signature
against the key ring folded from the log's control topic (``registered_keys``: the processor's own
registered, unrevoked key), then every listed file's size and SHA-256, streaming each into a private
copy when asked: readers then read the copies, so a file swapped after the check is never read.

Copies are kept: a copy is named by the file's path and signed SHA-256, and written (to a temporary
name, renamed only once its hash matched) into a directory only this user can write
(``private_cache``: ``<home>/state/view-cache/``, mode 0700). A file whose copy is already there is
neither read nor hashed again, so a reader's work per call is the manifest's signature and one ``lstat``
per listed file, plus whatever was published since its last call (part files never change once
written). Copies no manifest lists any more are removed once unused for ``COPY_GRACE_S``.

A publish that lands while a reader checks (a new snapshot, the old one removed) changes the manifest:
the check starts over with the new one, at most ``limits.MAX_VIEW_MANIFEST_RETRIES`` times. A mismatch
under an unchanged manifest is a forgery: ``ViewIntegrityError`` (exit 1) naming the processor, view,
file and both hashes, with the hint to replay and restart the processor.

Nothing here writes a published file; copies go only under the caller's ``copy_to`` directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ledger import limits
from ledger.errors import LedgerError, RejectError, ValidationError, ViewIntegrityError
from ledger.files import read_bounded
from ledger.integrity import manifest as mf
from ledger.integrity.keyring import KeyRing
from ledger.integrity.verify import Verifier, Where
from ledger.sdk.home import Home, HomeLayout, resolve_log_url

MANIFEST_FILE = "_manifest.json"  # in <home>/views/<processor>/
COPY_CHUNK_BYTES = 1 << 20  # one read while hashing / copying a published file
# a kept copy no manifest lists any more is removed once no reader has used it for this long (a reader
# touches each copy it reads; a query holding an older manifest's copies is done well within it)
COPY_GRACE_S = 600.0


def registered_keys(home: Home, log_url: str | None = None) -> KeyRing:
    """The key ring the home's log registers: every control record verified exactly as readers verify
    it (a bad one is skipped, as readers quarantine it), revocations judged as readers judge them on
    this log (by log order on a log with a total clock, by event time on Kafka)."""
    log = home.open_log(resolve_log_url(log_url, home))
    try:
        topic = home.control_topic
        log.ensure_topic(topic)
        verifier = Verifier(KeyRing(home.anchors(), by_log_order=bool(getattr(log, "total_order", False))))
        for p in range(log.partitions(topic)):
            offset, end = 0, log.end_offset(topic, p)
            while offset < end:
                recs = log.read(topic, p, offset, limits.MAX_EMITTER_CONTROL_READ_RECORDS)
                if not recs:
                    break
                for r in recs:
                    with contextlib.suppress(RejectError):
                        verifier.check_record(r.value, Where(r.topic, r.partition, r.offset))
                offset = recs[-1].offset + 1
        return verifier.keyring
    finally:
        log.close()


def has_published(views_dir: Path) -> bool:
    """Whether the processor whose views live in ``views_dir`` has published anything (a manifest or a file)."""
    return views_dir.is_dir() and ((views_dir / MANIFEST_FILE).exists() or any(views_dir.glob("*/*.parquet")))


@dataclass(frozen=True)
class ViewStatus:
    """One view of one processor as ``verify --views`` reports it; ``problems`` empty when it checks out.
    ``unlisted``: Parquet files in the view's directory the manifest does not list. Checked readers never
    read them, so they are no failure (a publish writes its files before the manifest that lists them);
    only plain DuckDB over the directory's glob would see them."""

    processor: str
    view: str
    files: int
    bytes: int
    problems: tuple[str, ...] = ()
    unlisted: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifiedViews:
    """What ``processor`` published, checked. ``manifest`` is None when it has published nothing;
    ``files`` maps each view to the files to read (the private copies when ``copy_to`` was given)."""

    processor: str
    manifest: mf.ViewManifest | None
    files: dict[str, list[Path]] = field(default_factory=dict)
    statuses: list[ViewStatus] = field(default_factory=list)

    def require_ok(self) -> VerifiedViews:
        for s in self.statuses:
            if s.problems:
                raise ViewIntegrityError(f"the published view {s.processor}.{s.view} does not match its signed "
                                         f"manifest: {s.problems[0]}", processor=s.processor, view=s.view,
                                         problems=len(s.problems), hint=mf.restart_hint(s.processor))
        return self


def verify_published(views_dir: Path, processor: str, ring: KeyRing, *,
                     copy_to: Path | None = None) -> VerifiedViews:
    """``processor``'s published views checked against its manifest (see the module doc); raises
    ``ViewIntegrityError`` on the first problem."""
    return check_published(views_dir, processor, ring, copy_to=copy_to).require_ok()


def check_published(views_dir: Path, processor: str, ring: KeyRing, *, copy_to: Path | None = None) -> VerifiedViews:
    """Like ``verify_published`` but every view's problems are collected in ``statuses`` (for reports);
    a manifest that is missing, malformed or not validly signed still raises ``ViewIntegrityError``."""
    if not has_published(views_dir):
        return VerifiedViews(processor, None)
    path = views_dir / MANIFEST_FILE
    if not path.exists():
        raise ViewIntegrityError(f"the published views of {processor} have no signed manifest ({MANIFEST_FILE})",
                                 processor=processor, path=str(path), hint=mf.restart_hint(processor))
    result = VerifiedViews(processor, None)
    for _ in range(limits.MAX_VIEW_MANIFEST_RETRIES):
        raw = _read_manifest(path, processor)
        result = _check_once(views_dir, processor, raw, ring, copy_to)
        if all(s.ok for s in result.statuses):
            return result
        try:
            again = _read_manifest(path, processor)
        except LedgerError:
            again = b""
        if again == raw:  # nothing was published meanwhile: the files really differ from what was signed
            return result
    return result


def private_cache(home: HomeLayout) -> Path | None:
    """The home's directory of kept copies (``HomeLayout.view_cache_dir``), created mode 0700; None when it
    cannot be created or is not private to this user (a directory others can write could hold a forged
    copy under a trusted name): the caller then copies into a fresh temporary directory."""
    path = home.view_cache_dir
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return path


def listed_files(view_dir: Path) -> list[Path] | None:
    """The files the latest manifest lists for the view in ``view_dir`` (``<views>/<processor>/<view>``),
    unchecked; None when there is no readable manifest. For readers that compare against the live state
    anyway (reprice, proofs): they see one publish, never the brief overlap of a new file and the old one
    it replaces."""
    processor, view = view_dir.parent.name, view_dir.name
    try:
        m, _ = mf.parse(_read_manifest(view_dir.parent / MANIFEST_FILE, processor), processor)
    except ViewIntegrityError:
        return None
    return [view_dir.parent / f.path for f in m.files_of(view)]


def _read_manifest(path: Path, processor: str) -> bytes:
    try:
        return read_bounded(path, limits.MAX_VIEW_MANIFEST_BYTES, field="manifest",
                            limit_name="MAX_VIEW_MANIFEST_BYTES")
    except ValidationError as e:
        raise ViewIntegrityError(f"the view manifest of {processor} cannot be read: {e.reason}", processor=processor,
                                 path=str(path), hint=mf.restart_hint(processor)) from None


def _check_once(views_dir: Path, processor: str, raw: bytes, ring: KeyRing, copy_to: Path | None) -> VerifiedViews:
    m, sig = mf.parse(raw, processor)
    mf.check_signature(m, sig, ring)
    out = VerifiedViews(processor, m, {v: [] for v in m.views})
    for view in m.views:
        problems: list[str] = []
        listed = m.files_of(view)
        for f in listed:
            target = None if copy_to is None else _copy_path(copy_to, f)
            problem = None if target is not None and _kept(target, f) else _hash_copy(views_dir / f.path, f, target)
            if problem:
                problems.append(problem)
            out.files[view].append(target or views_dir / f.path)
        names = {f.path for f in listed}
        d = views_dir / view
        extra = sorted(p.name for p in d.glob("*.parquet") if f"{view}/{p.name}" not in names) if d.is_dir() else []
        out.statuses.append(ViewStatus(processor, view, len(listed), sum(f.size for f in listed), tuple(problems),
                                       tuple(extra)))
    stray = sorted({f.view for f in m.files} - set(m.views))
    if stray:
        out.statuses.append(ViewStatus(processor, stray[0], 0, 0, ("files of a view the manifest does not list",)))
    if copy_to is not None and all(s.ok for s in out.statuses):
        _drop_unused_copies(copy_to, {_copy_path(copy_to, f) for f in m.files})
    return out


def _copy_path(copy_to: Path, f: mf.ManifestFile) -> Path:
    """Where the copy of ``f`` is kept: its name and signed hash, so a copy only ever holds those bytes."""
    view, _, name = f.path.partition("/")
    return copy_to / view / f"{f.sha256}-{name}"


def _kept(target: Path, f: mf.ManifestFile) -> bool:
    """Whether a checked copy of ``f`` is already kept at ``target`` (only a copy whose hash matched is ever
    renamed there); touched, so an unlisted copy in use is not removed under a reader."""
    try:
        st = os.lstat(target)
        if not stat.S_ISREG(st.st_mode) or st.st_size != f.size:
            return False
        os.utime(target)
    except OSError:
        return False
    return True


def _drop_unused_copies(copy_to: Path, listed: set[Path]) -> None:
    """Kept copies the manifest no longer lists (merged parts, replaced snapshots), unused for COPY_GRACE_S."""
    cutoff = time.time() - COPY_GRACE_S
    with contextlib.suppress(OSError):
        for d in copy_to.iterdir():
            for p in d.iterdir():
                with contextlib.suppress(OSError):
                    if p not in listed and os.lstat(p).st_mtime < cutoff:
                        p.unlink()


def _hash_copy(src: Path, f: mf.ManifestFile, target: Path | None) -> str | None:
    """Stream ``src`` (at most its signed size + 1 byte) through SHA-256, into ``target`` if given; the
    problem as text when it is missing, not a regular file, or differs from the manifest."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO put in a file's place must not block us
    except OSError as e:
        return f"{f.path} cannot be read: {e.strerror or e}"
    h = hashlib.sha256()
    size = 0
    tmp: str | None = None
    out_fd = -1
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return f"{f.path} is not a regular file"
        os.set_blocking(fd, True)
        if target is not None:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            out_fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".copy-")
        with open(os.dup(fd), "rb") as reader, (open(out_fd, "wb") if tmp is not None else _Null()) as writer:
            while size <= f.size:
                chunk = reader.read(min(COPY_CHUNK_BYTES, f.size + 1 - size))
                if not chunk:
                    break
                h.update(chunk)
                writer.write(chunk)
                size += len(chunk)
        problem = None
        if size != f.size:
            problem = (f"{f.path} is {'larger than' if size > f.size else f'{size:,} bytes, not'} the "
                       f"{f.size:,} bytes signed")
        elif h.hexdigest() != f.sha256:
            problem = f"{f.path} has SHA-256 {h.hexdigest()}, the manifest signed {f.sha256}"
        if problem is None and tmp is not None and target is not None:
            os.replace(tmp, target)  # the kept copy: only bytes whose hash matched ever get this name
            tmp = None
        return problem
    except OSError as e:
        return f"{f.path} cannot be read: {e.strerror or e}"
    finally:
        os.close(fd)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


class _Null:
    """A writer that drops what it is given (hash only, no copy)."""

    def write(self, data: bytes) -> int:
        return len(data)

    def __enter__(self) -> _Null:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


__all__ = ["MANIFEST_FILE", "VerifiedViews", "ViewStatus", "check_published", "has_published", "listed_files",
           "private_cache", "registered_keys", "verify_published"]
