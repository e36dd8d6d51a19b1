"""Signed manifests of published views: what a processor published, so readers can tell a forgery.

A processor publishes its views as Parquet files anyone with access to the home can rewrite. With
each publish it also writes ``_manifest.json``: the SHA-256 and size of every file it published, the
input positions and batch they reflect, the state digest when known, signed with the processor's
Ed25519 key (the key it signs derived events with, registered on the log by the operator). A reader
checks the signature against the key ring folded from the log, then every file's hash, and reads only
the files the manifest lists.

The signed bytes are ``MANIFEST_DOMAIN`` + canonical JSON of the body (sorted keys, no spaces, ASCII),
so a manifest signature can never be mistaken for a batch or checkpoint signature.

Pure: ``build`` / ``sign`` / ``parse`` / ``check_signature``; reading and hashing files is the
caller's (``ledger.sdk.published``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ledger.errors import ViewIntegrityError
from ledger.integrity.keyring import KeyInfo, KeyRing
from ledger.integrity.keys import SigningKey

MANIFEST_VERSION = 1
MANIFEST_DOMAIN = b"tokenledger/view-manifest/v1\n"
PROCESSOR_SIGNER_PREFIX = "processor."  # a processor signs as processor.<name> (its registration on the log)
# one file of one view: "<view>/<file>.parquet", both plain names (no directories, no "..")
_FILE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}/[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.parquet")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ManifestFile:
    """One published file: its path under the processor's views directory, SHA-256 (hex) and size in bytes."""

    path: str
    sha256: str
    size: int

    @property
    def view(self) -> str:
        return self.path.split("/", 1)[0]


@dataclass(frozen=True)
class ViewManifest:
    """What one publish of ``processor`` holds (see the module doc)."""

    processor: str
    signer_id: str
    key_id: str
    batch: int
    positions: tuple[tuple[str, int], ...]
    digest: str | None
    views: tuple[str, ...]
    files: tuple[ManifestFile, ...]

    def body(self) -> dict[str, Any]:
        return {"version": MANIFEST_VERSION, "processor": self.processor, "signer_id": self.signer_id,
                "key_id": self.key_id, "batch": self.batch, "positions": dict(self.positions),
                "digest": self.digest, "views": list(self.views),
                "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in self.files]}

    def signing_bytes(self) -> bytes:
        return MANIFEST_DOMAIN + _canonical(self.body())

    def files_of(self, view: str) -> list[ManifestFile]:
        return [f for f in self.files if f.view == view]


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign(manifest: ViewManifest, key: SigningKey) -> bytes:
    """The manifest file's bytes: the body and the signature of ``key`` over its signing bytes."""
    if key.signer_id != manifest.signer_id or key.key_id != manifest.key_id:
        raise ViewIntegrityError("manifest signed by another key than it names", processor=manifest.processor,
                                 expected=manifest.key_id, actual=key.key_id)
    doc = {"manifest": manifest.body(), "signature": key.sign(manifest.signing_bytes()).hex()}
    return json.dumps(doc, indent=1, sort_keys=True).encode("ascii") + b"\n"


def parse(data: bytes, processor: str) -> tuple[ViewManifest, bytes]:
    """The manifest and its signature from a manifest file's bytes; ``ViewIntegrityError`` if malformed."""
    try:
        doc = json.loads(data.decode("ascii"))
        body, sig = doc["manifest"], bytes.fromhex(doc["signature"])
        if body["version"] != MANIFEST_VERSION:
            raise ValueError(f"version {body['version']!r} is not {MANIFEST_VERSION}")
        files = tuple(ManifestFile(str(f["path"]), str(f["sha256"]), int(f["size"])) for f in body["files"])
        for f in files:
            if _FILE_RE.fullmatch(f.path) is None or _SHA256_RE.fullmatch(f.sha256) is None or f.size < 0:
                raise ValueError(f"bad file entry {f.path!r}")
        m = ViewManifest(processor=str(body["processor"]), signer_id=str(body["signer_id"]),
                         key_id=str(body["key_id"]), batch=int(body["batch"]),
                         positions=tuple((str(k), int(v)) for k, v in sorted(body["positions"].items())),
                         digest=None if body["digest"] is None else str(body["digest"]),
                         views=tuple(str(v) for v in body["views"]), files=files)
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise ViewIntegrityError(f"the view manifest of {processor} is malformed ({type(e).__name__}: {e})",
                                 processor=processor, hint=restart_hint(processor)) from None
    if m.processor != processor:
        raise ViewIntegrityError(f"the view manifest of {processor} names another processor", processor=processor,
                                 expected=processor, actual=m.processor, hint=restart_hint(processor))
    return m, sig


def check_signature(manifest: ViewManifest, signature: bytes, ring: KeyRing) -> KeyInfo:
    """The key that signed ``manifest``: registered on the log for its processor (role processor, signer
    ``processor.<name>``), not revoked, and its signature verifies. ``ViewIntegrityError`` otherwise."""
    name = manifest.processor
    expected = PROCESSOR_SIGNER_PREFIX + name
    info = ring.get(manifest.key_id)
    problem = None
    if manifest.signer_id != expected:
        problem = f"is signed as {manifest.signer_id!r}, not as the processor's signer {expected!r}"
    elif info is None:
        problem = "is signed by a key never registered on the log"
    elif info.owner != expected or info.role != "processor":
        problem = f"is signed by a key registered to {info.owner!r} (role {info.role}), not to {expected!r}"
    elif info.revoked:
        problem = f"is signed by a revoked key ({info.revoked_reason or 'revoked'})"
    elif not info.public.verify(signature, manifest.signing_bytes()):
        problem = "has a signature that does not verify"
    if problem is not None or info is None:
        raise ViewIntegrityError(f"the view manifest of {name} {problem}", processor=name, key_id=manifest.key_id,
                                 hint=restart_hint(name))
    return info


def restart_hint(processor: str) -> str:
    """What a user does about views that do not match their manifest."""
    return (f"the published views of {processor} were changed after it published them: check its state with "
            f"`tokenledger replay {processor}`, then restart it (`tokenledger run {processor}`), which republishes "
            "every view from its state")


__all__ = ["MANIFEST_DOMAIN", "MANIFEST_VERSION", "PROCESSOR_SIGNER_PREFIX", "ManifestFile", "ViewManifest",
           "check_signature", "parse", "restart_hint", "sign"]
