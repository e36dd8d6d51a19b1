"""A client that signs its own batches (no emitter), for the batch gate's tests: what a producer in another
language does with the wire format (``ledger.wire.codec``) and an Ed25519 key."""

from __future__ import annotations

from ledger.integrity.chain import GENESIS, Head
from ledger.integrity.keys import SigningKey
from ledger.testing.homes import T0
from ledger.wire import codec
from ledger.wire.events import EMPTY_CONTEXT, Action, Body, Context


class Client:
    """Signs batches for one key exactly as the emitter does (derive_event_id, assemble_event, event_hash,
    signing_bytes, encode_batch), keeping its own chain head. ``batch`` builds ``n`` actions named ``op-0``,
    ``op-1``, ... (or ``bodies``) at event times ``t``, ``t + 1``, ...; ``head`` signs on another head than the
    client's, ``advance=False`` leaves the client's head where it was, ``sign_with`` signs with another key (a
    forgery), ``keys`` gives each event an idempotency key."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self.head = GENESIS

    def batch(self, n: int = 1, *, t: int = T0 + 1_000, op: str = "op", contexts: list[Context] | None = None,
              head: Head | None = None, advance: bool = True, version: int = codec.BATCH_VERSION,
              sign_with: SigningKey | None = None, keys: list[str | None] | None = None,
              bodies: list[Body] | None = None) -> bytes:
        start = self.head if head is None else head
        n = len(bodies) if bodies is not None else n
        raws, hashes = [], []
        h, seq = start.hash, start.seq
        for i in range(n):
            ctx = contexts[i] if contexts is not None else EMPTY_CONTEXT
            idem = keys[i] if keys is not None else None
            body = bodies[i] if bodies is not None else Action(f"{op}-{i}")
            content = codec.encode_content(t + i, ctx, body)
            event_id = codec.derive_event_id(self.key.signer_id, idem, content)
            seq += 1
            raw = codec.assemble_event(event_id=event_id, signer_id=self.key.signer_id, seq=seq, prev_hash=h,
                                       idempotency_key=idem, content=content)
            h = codec.event_hash(raw)
            raws.append(raw)
            hashes.append(h)
        signer = sign_with or self.key
        signature = signer.sign(codec.signing_bytes(version, self.key.signer_id, self.key.key_id, hashes))
        if advance:
            self.head = Head(seq, h)
        return codec.encode_batch(self.key.signer_id, self.key.key_id, raws, signature, version)


def ids_of(raw: bytes) -> tuple[str, ...]:
    """The event ids of a signed batch, in order."""
    return tuple(codec.decode_event(e).event.event_id for e in codec.decode_batch(raw).events)
