"""Registrations a home appends, signed by its operator: the bootstrap of a new home and a signer's key.

Beside ``home`` (which knows the layout and opens nothing on the log) because these append through the
operator's ``Emitter``, and the emitter depends on the home, never the other way round.
"""

from __future__ import annotations

from collections.abc import Mapping

from ledger.economics.price_events import price_event_time_us, seed_events
from ledger.errors import ValidationError
from ledger.integrity.keys import SigningKey, save_key
from ledger.log import Log
from ledger.sdk.emitter import ControlKeys, Emitter
from ledger.sdk.home import OPERATOR_ID, Home, Registration, check_signer_id
from ledger.wire.events import AgentRegistered, Grant
from ledger.wire.vocab import Capability

NOTARY_SIGNER = "processor.notary"  # the signer the notary processor signs checkpoints as


def bootstrap(home: Home, log: Log, *, price_book: bool = True) -> int:
    """What every new home appends first, signed by the operator on the control topic: the operator's
    own registration (readers trust it from config.json's anchor), the notary processor's key and its
    ``notary`` grant (only a granted notary's checkpoints count), then, if asked, the installed price
    catalog's lines and match rules as price_set and price_match events (processors price from the log
    only). Returns the number of price events appended."""
    op = home.operator_key()
    prices = seed_events() if price_book else []
    with Emitter.for_operator(home, log) as em:
        em.emit(AgentRegistered(agent_id=OPERATOR_ID, key_id=op.key_id, public_key=op.public.raw, role="operator"))
    register_signer(home, log, NOTARY_SIGNER, role="processor")
    with Emitter.for_operator(home, log) as em:
        em.emit(Grant(agent_id=NOTARY_SIGNER, capability=Capability.NOTARY.value))
        for body in prices:
            em.emit(body, event_time_us=price_event_time_us(body))
    return len(prices)


def ensure_notary_grant(home: Home, log: Log, granted: bool) -> bool:
    """Append the notary's grant unless the log already holds it (``granted``: what the caller read from
    the key ring of the control topic); an older home, made before grants, gets it once this way.
    Returns whether a grant was appended."""
    if granted:
        return False
    with Emitter.for_operator(home, log) as em:
        em.emit(Grant(agent_id=NOTARY_SIGNER, capability=Capability.NOTARY.value))
    return True


def valid_key_ids(home: Home, log: Log, name: str) -> list[str]:
    """The ids of ``name``'s keys the log's control topic registered and has not revoked (as readers see it)."""
    keys = ControlKeys(log, home.control_topic, home.anchors())
    keys.refresh()
    infos = keys.ring.keys()
    return sorted(k.key_id for k in infos if k.owner == name and not k.revoked)


def register_signer(home: Home, log: Log, name: str, *, role: str = "agent", priority: int = 1,
                    org: str | None = None, project: str | None = None,
                    attributes: Mapping[str, str] | None = None) -> Registration:
    """Register ``name``'s key on the log, signed by the operator: its key file if the home has one
    (a re-registration, e.g. new attributes), else a new key. The key is saved only after the
    registration is appended, so a failed registration leaves no untrusted key behind.

    A signer the log already has a valid key for is refused (``ValidationError``, nothing appended) unless
    this home's key file is that key: a second key would leave the first one valid, and two keys writing
    one chain fork it. A lost key is replaced with ``agent rotate``, which retires the old one."""
    check_signer_id(name, "name")
    path = home.key_path(name)
    key = home.load_key(name) if path.exists() else SigningKey.generate(name)
    valid = valid_key_ids(home, log, name)
    if valid and key.key_id not in valid:
        raise ValidationError("name", name, "is already registered with another key (" + ", ".join(valid) + "); "
                              "registering a second key would leave that one valid",
                              registered_key_ids=valid, key_file=str(path) if path.exists() else None,
                              hint=f"replace a lost or leaked key with `tokenledger agent rotate {name}`")
    body = AgentRegistered(agent_id=name, key_id=key.key_id, public_key=key.public.raw, role=role,
                           priority=priority, org=org, project=project,
                           attributes=tuple((attributes or {}).items()))
    with Emitter.for_operator(home, log) as em:
        event_id = em.emit(body)
    if not path.exists():
        save_key(path, key)
    return Registration(signer_id=name, key_id=key.key_id, role=role, event_id=event_id, key_file=str(path))
