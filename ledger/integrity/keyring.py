"""The key ring: which public keys may sign, for whom, in which role — built only from the log.

Trust starts from the operator keys given out of band (the ledger home's config, or the auditor's
command line). Every other key is trusted only after an ``agent_registered`` control event signed by
an operator; ``key_rotated`` replaces a key and ``key_revoked`` ends one.

When a revocation takes effect depends on the log:

- **By log order** (``by_log_order=True``; every log whose readers fold control and data in one append
  order: the embedded logs by their clock, Kafka merged by append time — see ``ledger.log.order``): a
  key is valid for the records appended after its registration and before its revocation or rotation,
  whatever time the events claim. The ring is folded in append order, so a revoked key is simply
  revoked for everything judged after it: a back-dated record signed after the revocation is refused,
  and a back-dated revocation does not reach records appended before it.
- **By event time** (a log that declares no append order, where control is drained before data): from
  the control event's event time on — a batch is refused when any of its events is at or after that
  time — so the verdict does not depend on how data partitions interleave with the control partition.

The ring also holds what the operator granted beyond roles (``grant`` control events: backfill with a
maximum age, notary, grader, reserve on a scope; see ``ledger.wire.vocab.Capability``) and the skew window
(``clock_policy``; defaults in ``ledger.limits``), both folded in the same order as keys, so every reader
judges a record by the grants and window in force when it was appended.

A second revocation or a rotation of a revoked key never moves its revocation later (the first one stands).

The last valid operator key cannot be revoked (``validate_control`` refuses it): nobody could sign a
control event afterwards. An operator key is replaced by rotation, which names its successor.

Pure: ``apply`` folds control events; ``check`` answers for one batch. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ledger import limits
from ledger.errors import RejectCode, RejectError
from ledger.integrity.keys import PublicKey, key_id_of
from ledger.wire.events import AgentRegistered, Body, ClockPolicy, Grant, KeyRevoked, KeyRotated


@dataclass(frozen=True)
class SkewWindow:
    """How far an event's claimed time may lie from its record's append time (microseconds)."""

    max_behind_us: int = limits.DEFAULT_MAX_CLOCK_BEHIND_US
    max_ahead_us: int = limits.DEFAULT_MAX_CLOCK_AHEAD_US


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    owner: str  # signer id the key signs for
    role: str  # agent | operator | processor
    public: PublicKey
    revoked: bool = False
    revoked_reason: str = ""
    revoked_at_us: int = 0  # event time from which the key signs nothing (when revoked)


class KeyRing:
    """Which keys may sign for whom, in which role: folded from operator-signed control events only."""

    def __init__(self, anchors: dict[str, bytes] | None = None, *, by_log_order: bool = False) -> None:
        """``anchors``: {operator signer id: raw public key} trusted without registration.
        ``by_log_order``: revocations take effect by log order, not event time (module doc)."""
        self.by_log_order = by_log_order
        self._keys: dict[str, KeyInfo] = {}
        self.agents: dict[str, AgentRegistered] = {}
        # (agent_id, capability, scope) -> the grant in force; withdrawn grants are removed
        self.grants: dict[tuple[str, str, str], Grant] = {}
        self.skew = SkewWindow()
        for signer, raw in (anchors or {}).items():
            pk = PublicKey.from_raw(raw)
            self._keys[pk.key_id] = KeyInfo(pk.key_id, signer, "operator", pk)

    def copy(self) -> KeyRing:
        other = KeyRing(by_log_order=self.by_log_order)
        other._keys = dict(self._keys)
        other.agents = dict(self.agents)
        other.grants = dict(self.grants)
        other.skew = self.skew
        return other

    def adopt(self, other: KeyRing) -> None:
        """Take over another ring's state (commit of a batch checked on a copy)."""
        self._keys = other._keys
        self.agents = other.agents
        self.grants = other.grants
        self.skew = other.skew

    def get(self, key_id: str) -> KeyInfo | None:
        return self._keys.get(key_id)

    def keys(self) -> list[KeyInfo]:
        return list(self._keys.values())

    def granted(self, agent_id: str, capability: str, scope: str = "") -> Grant | None:
        """The grant in force for this signer, capability (and scope), or None."""
        return self.grants.get((agent_id, capability, scope))

    def granted_scopes(self, agent_id: str, capability: str) -> list[str]:
        """The scopes of every grant of ``capability`` in force for this signer, sorted."""
        return sorted(s for (a, c, s) in self.grants if a == agent_id and c == capability)

    def check_time(self, signer_id: str, event_id: str, event_time_us: int, append_time_us: int) -> bool:
        """Judge an event's claimed time against its record's append time with the window in force; return
        True when the event is *backfilled* (earlier than the window, accepted only through the signer's
        backfill grant). Raise RejectError(CLOCK_SKEW) naming claimed time, append time and window otherwise.

        The future side is never widened by a grant: nobody may claim time the log has not reached."""
        w = self.skew
        earliest, latest = append_time_us - w.max_behind_us, append_time_us + w.max_ahead_us
        if earliest <= event_time_us <= latest:
            return False
        grant = self.granted(signer_id, "backfill")
        if grant is not None and append_time_us - grant.max_age_us <= event_time_us < earliest:
            return True
        side = "after" if event_time_us > latest else "before"
        raise RejectError(RejectCode.CLOCK_SKEW, f"claimed event time lies {side} the skew window around the "
                          "record's append time", field="event_time_us", event_id=event_id, signer_id=signer_id,
                          claimed_us=event_time_us, append_time_us=append_time_us, max_behind_us=w.max_behind_us,
                          max_ahead_us=w.max_ahead_us, earliest_us=earliest, latest_us=latest,
                          backfill_max_age_us=None if grant is None else grant.max_age_us,
                          hint="the operator sets the window (tokenledger clock set) and grants backfill "
                               "(tokenledger agent grant NAME backfill --max-age ...)")

    def check_attribution(self, signer_id: str, event_id: str, agent: str | None) -> None:
        """An event recorded on another agent's behalf (``Context.agent``) needs the signer's backfill grant: the
        operator's word that this signer imports other agents' history. Anyone else naming another agent would be
        charging that agent's budget and costs with its own claims. Raise RejectError(NOT_GRANTED) otherwise."""
        if agent is None or agent == signer_id or self.granted(signer_id, "backfill") is not None:
            return
        raise RejectError(RejectCode.NOT_GRANTED, "only a signer with a backfill grant (an importer) may record "
                          "events on another agent's behalf", field="context.agent", event_id=event_id,
                          signer_id=signer_id, agent=agent,
                          hint=f"the operator grants it: tokenledger agent grant {signer_id} backfill --max-age 30d")

    def check(self, signer_id: str, key_id: str, event_time_us: int | None) -> KeyInfo:
        """The key a batch from ``signer_id`` signed with ``key_id`` must verify against; ``event_time_us``
        is the latest event time in the batch (None: only check that the key exists and is the signer's)."""
        info = self._keys.get(key_id)
        if info is None:
            raise RejectError(RejectCode.UNKNOWN_KEY, "key was never registered by an operator",
                              signer_id=signer_id, key_id=key_id)
        if info.owner != signer_id:
            raise RejectError(RejectCode.SIGNER_MISMATCH, "key belongs to another signer",
                              signer_id=signer_id, key_id=key_id, expected=info.owner, actual=signer_id)
        if info.revoked and (self.by_log_order
                             or (event_time_us is not None and event_time_us >= info.revoked_at_us)):
            raise RejectError(RejectCode.REVOKED_KEY, f"key was revoked ({info.revoked_reason or 'no reason given'})",
                              signer_id=signer_id, key_id=key_id, revoked_at_us=info.revoked_at_us,
                              actual=event_time_us)
        return info

    def validate_control(self, signer: KeyInfo, body: Body) -> None:
        """Refuse a control event that is not signed by an operator or does not fit the ring."""
        if signer.role != "operator":
            raise RejectError(RejectCode.NOT_OPERATOR, f"{body.KIND} must be signed by an operator key",
                              signer_id=signer.owner, key_id=signer.key_id, kind=body.KIND)
        if isinstance(body, AgentRegistered):
            self._validate_registration(body)
        elif isinstance(body, KeyRotated):
            old = self._keys.get(body.old_key_id)
            if old is None or old.owner != body.agent_id:
                raise RejectError(RejectCode.UNKNOWN_KEY, "rotation names a key this signer does not have",
                                  signer_id=body.agent_id, key_id=body.old_key_id)
            actual = key_id_of(body.new_public_key)
            if body.new_key_id != actual:
                raise RejectError(RejectCode.INVALID_FIELD, "new_key_id does not match the new public key",
                                  field="new_key_id", expected=actual, actual=body.new_key_id)
        elif isinstance(body, KeyRevoked):
            info = self._keys.get(body.key_id)
            if info is None or info.owner != body.agent_id:
                raise RejectError(RejectCode.UNKNOWN_KEY, "revocation names a key this signer does not have",
                                  signer_id=body.agent_id, key_id=body.key_id)
            if info.role == "operator" and not info.revoked and not self._other_operator_keys(info.key_id):
                # nobody could sign a control event afterwards (not even a new registration): the ledger
                # would be frozen for good. A rotation names the successor; a revocation does not.
                raise RejectError(RejectCode.INVALID_FIELD, "revocation would leave no valid operator key "
                                  "(rotate the operator's key instead: a rotation names its successor)",
                                  field="key_id", value=body.key_id, signer_id=body.agent_id, kind=body.KIND)
        elif isinstance(body, Grant) and not self._is_signer(body.agent_id):
            raise RejectError(RejectCode.INVALID_FIELD, "a grant names a signer that was never registered",
                              field="agent_id", value=body.agent_id, kind=body.KIND)

    def _validate_registration(self, body: AgentRegistered) -> None:
        actual = key_id_of(body.public_key)
        if body.key_id != actual:
            raise RejectError(RejectCode.INVALID_FIELD, "key_id does not match the public key",
                              field="key_id", expected=actual, actual=body.key_id)
        known = self._keys.get(body.key_id)
        if known is not None and known.owner != body.agent_id:
            raise RejectError(RejectCode.INVALID_FIELD, "this public key is already registered to another signer",
                              field="public_key", key_id=body.key_id, expected=known.owner, actual=body.agent_id)

    def _is_signer(self, agent_id: str) -> bool:
        return agent_id in self.agents or any(k.owner == agent_id for k in self._keys.values())

    def _other_operator_keys(self, key_id: str) -> list[str]:
        """Operator keys other than ``key_id`` that are not revoked."""
        return [k.key_id for k in self._keys.values() if k.role == "operator" and not k.revoked and k.key_id != key_id]

    def apply(self, body: Body, event_time_us: int = 0) -> None:
        """Fold one accepted control event (with its event time) into the ring."""
        if isinstance(body, AgentRegistered):
            self.agents[body.agent_id] = body
            self._keys[body.key_id] = KeyInfo(body.key_id, body.agent_id, body.role,
                                              PublicKey.from_raw(body.public_key))
        elif isinstance(body, KeyRotated):
            old = self._keys[body.old_key_id]
            if not old.revoked:  # rotating an already revoked key must not move its revocation later
                self._keys[old.key_id] = replace(old, revoked=True, revoked_reason=f"rotated to {body.new_key_id}",
                                                 revoked_at_us=event_time_us)
            self._keys[body.new_key_id] = KeyInfo(body.new_key_id, body.agent_id, old.role,
                                                  PublicKey.from_raw(body.new_public_key))
        elif isinstance(body, KeyRevoked):
            info = self._keys[body.key_id]
            if not info.revoked:  # a second revocation never moves the first one later
                self._keys[body.key_id] = replace(info, revoked=True, revoked_reason=body.reason or "revoked",
                                                  revoked_at_us=event_time_us)
        elif isinstance(body, Grant):
            grant_key = (body.agent_id, body.capability, body.scope)
            if body.active:
                self.grants[grant_key] = body
            else:
                self.grants.pop(grant_key, None)
        elif isinstance(body, ClockPolicy):
            self.skew = SkewWindow(body.max_behind_us, body.max_ahead_us)
