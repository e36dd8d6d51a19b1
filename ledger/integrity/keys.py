"""Ed25519 keys: generate, save, load (files are 0600 and refused when group/world readable), key ids.

A key file is a small JSON document holding the raw 32-byte seed in hex. Nothing in this module
ever prints, logs or puts the private key into an exception: ``repr`` shows only the key id.
I/O lives in ``save_key`` / ``load_key``; the rest is pure.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger import limits
from ledger.errors import KeyFileError, ValidationError
from ledger.files import read_text_bounded

KEY_FILE_KIND = "tokenledger-ed25519-key"
KEY_FILE_MODE = 0o600


def key_id_of(public_key: bytes) -> str:
    """A short, stable name for a public key: ``ed25519:`` + 16 hex chars of its SHA-256."""
    return "ed25519:" + hashlib.sha256(public_key).hexdigest()[:16]


def public_key_fingerprint(public_key: bytes) -> str:
    """The full SHA-256 of a public key, for proofs and audits."""
    return hashlib.sha256(public_key).hexdigest()


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    raw: bytes
    _key: Ed25519PublicKey

    @classmethod
    def from_raw(cls, raw: bytes) -> PublicKey:
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != limits.PUBLIC_KEY_BYTES:
            raise ValidationError("public_key", raw, f"must be {limits.PUBLIC_KEY_BYTES} raw bytes")
        return cls(key_id=key_id_of(bytes(raw)), raw=bytes(raw), _key=Ed25519PublicKey.from_public_bytes(bytes(raw)))

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self._key.verify(signature, message)
            return True
        except InvalidSignature:
            return False

    def __repr__(self) -> str:
        return f"PublicKey({self.key_id})"


class SigningKey:
    """A private Ed25519 key bound to the signer id it signs for."""

    __slots__ = ("_sk", "public", "signer_id")

    def __init__(self, signer_id: str, private: Ed25519PrivateKey) -> None:
        self.signer_id = signer_id
        self._sk = private
        raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public = PublicKey.from_raw(raw)

    @classmethod
    def generate(cls, signer_id: str) -> SigningKey:
        return cls(signer_id, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, signer_id: str, seed: bytes) -> SigningKey:
        """Deterministic key from a 32-byte seed (golden vectors and tests)."""
        if len(seed) != 32:
            raise ValidationError("seed", f"<{len(seed)} bytes>", "must be 32 bytes")
        return cls(signer_id, Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def sign(self, message: bytes) -> bytes:
        return self._sk.sign(message)

    def _seed(self) -> bytes:
        return self._sk.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                      serialization.NoEncryption())

    def __repr__(self) -> str:  # never the secret
        return f"SigningKey(signer_id={self.signer_id!r}, key_id={self.key_id!r})"


def save_key(path: Path, key: SigningKey, *, overwrite: bool = False) -> Path:
    """Write a key file with mode 0600, atomically; refuse to overwrite unless asked."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite:
        raise KeyFileError("key file already exists", path=str(path),
                           hint="choose another name, or delete the old key file if you really mean to replace it")
    doc = {"kind": KEY_FILE_KIND, "signer_id": key.signer_id, "key_id": key.key_id,
           "public_key": key.public.raw.hex(), "seed": key._seed().hex()}
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, KEY_FILE_MODE)
    try:
        os.fchmod(fd, KEY_FILE_MODE)  # umask cannot widen it, an old tmp file cannot keep wider bits
        os.write(fd, (json.dumps(doc, indent=2) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def load_key(path: Path) -> SigningKey:
    """Load a key file; refuse one that group or others can read or write, or that is malformed."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(
            "key file not found", path=str(path),
            hint="create it with `tokenledger keys new NAME` or `tokenledger agent register NAME`") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError("key path is not a regular file", path=str(path))
    if st.st_mode & 0o077:
        raise KeyFileError("key file is readable or writable by group/others", path=str(path),
                           mode=oct(st.st_mode & 0o777), hint=f"run: chmod 600 {path}")
    try:
        doc = json.loads(read_text_bounded(path, limits.MAX_KEY_FILE_BYTES, field="key_file",
                                           limit_name="MAX_KEY_FILE_BYTES"))
        if not isinstance(doc, dict) or doc.get("kind") != KEY_FILE_KIND:
            raise ValueError(f"kind is not {KEY_FILE_KIND}")
        seed = bytes.fromhex(doc["seed"])
        key = SigningKey.from_seed(str(doc["signer_id"]), seed)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, ValidationError) as e:
        # the reason names the field, never the secret
        raise KeyFileError(f"key file is malformed: {type(e).__name__}", path=str(path)) from None
    if doc.get("public_key") and doc["public_key"] != key.public.raw.hex():
        raise KeyFileError("key file's public key does not match its seed", path=str(path))
    return key
