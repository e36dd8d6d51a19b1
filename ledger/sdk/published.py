"""Checking what a processor published against its signed manifest, before anyone reads it.

``verify_published`` reads ``<home>/views/<processor>/_manifest.json`` (bounded), checks its signature
against the key ring folded from the log's control topic (``registered_keys``: the processor's own
registered, unrevoked key), then every listed file's size and SHA-256, streaming each into a private
copy when asked: readers then read the copies, so a file swapped after the check is never read.

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
from dataclasses import dataclass, field
from pathlib import Path

from ledger import limits
from ledger.errors import LedgerError, RejectError, ValidationError, ViewIntegrityError
from ledger.files import read_bounded
from ledger.integrity import manifest as mf
from ledger.integrity.keyring import KeyRing
from ledger.integrity.verify import Verifier, Where
from ledger.sdk.home import Home, resolve_log_url

MANIFEST_FILE = "_manifest.json"  # in <home>/views/<processor>/
COPY_CHUNK_BYTES = 1 << 20  # one read while hashing / copying a published file


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
            target = None if copy_to is None else copy_to / f.path
            problem = _hash_copy(views_dir / f.path, f, target)
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
    return out


def _hash_copy(src: Path, f: mf.ManifestFile, target: Path | None) -> str | None:
    """Stream ``src`` (at most its signed size + 1 byte) through SHA-256, into ``target`` if given; the
    problem as text when it is missing, not a regular file, or differs from the manifest."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO put in a file's place must not block us
    except OSError as e:
        return f"{f.path} cannot be read: {e.strerror or e}"
    h = hashlib.sha256()
    size = 0
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return f"{f.path} is not a regular file"
        os.set_blocking(fd, True)
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
        with open(os.dup(fd), "rb") as reader, (open(target, "wb") if target is not None else _Null()) as writer:
            while size <= f.size:
                chunk = reader.read(min(COPY_CHUNK_BYTES, f.size + 1 - size))
                if not chunk:
                    break
                h.update(chunk)
                writer.write(chunk)
                size += len(chunk)
    except OSError as e:
        return f"{f.path} cannot be read: {e.strerror or e}"
    finally:
        os.close(fd)
    if size != f.size:
        return f"{f.path} is {'larger than' if size > f.size else f'{size:,} bytes, not'} the {f.size:,} bytes signed"
    if h.hexdigest() != f.sha256:
        return f"{f.path} has SHA-256 {h.hexdigest()}, the manifest signed {f.sha256}"
    return None


class _Null:
    """A writer that drops what it is given (hash only, no copy)."""

    def write(self, data: bytes) -> int:
        return len(data)

    def __enter__(self) -> _Null:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


__all__ = ["MANIFEST_FILE", "VerifiedViews", "ViewStatus", "check_published", "has_published", "listed_files",
           "registered_keys", "verify_published"]
