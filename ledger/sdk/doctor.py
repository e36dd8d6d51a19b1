"""``tokenledger doctor``: is the home's log reachable, and is it laid out the way the ledger relies on?

Each check gives a ``Finding`` (check, subject, status, detail, fix). Status ``problem``: the ledger can lose
records, refuse appends, or reorder them (``tokenledger doctor`` exits 1); ``warn``: works, but not as a
production cluster should (e.g. one broker); ``ok``. ``fix`` says what to run or change. Nothing here changes the
log: no topic is created (``Home.open_log`` would), no setting altered, SQLite is opened read-only.

Kafka (``judge_kafka`` is pure: a ``ClusterLayout`` in, findings out). Ledger topics are the home's control and
events topics (must exist) and every other existing topic named ``<prefix>.*`` (derived, rejected, checkpoints):
- connect: the cluster answers with the URL's TLS/SASL settings (a bad setting or refused login is a problem);
- partitions: control has exactly 1 (readers fold it in one total order); events as many as the home's config
  says (otherwise a warning: agents are placed by the topic's real count);
- replication: factor >= min(3, brokers) (problem below it); fewer than 3 brokers is a warning; in-sync replicas
  below the factor is a warning (under-replicated now);
- min.insync.replicas (Kafka's default 1 if the cluster reports none): with a factor >= 3 it must be >= 2 (else
  acks=all accepts a record held by one broker); above the factor every append fails; equal to a factor > 1,
  one broker down blocks appends (warning);
- message.timestamp.type must be LogAppendTime (the broker stamps append time: ``ledger.log.kafka``'s doc);
- retention: ``retention.ms`` and ``retention.bytes`` must be -1 and ``cleanup.policy`` must not compact: the log
  is the ledger's only copy of its events; a setting the cluster does not report is a warning;
- security: plaintext to a host off loopback, hostname checking turned off, a password over SASL_PLAINTEXT, or a
  secret file readable by group or others are warnings.

SQLite: the file exists, is a regular file readable and writable by this user, its directory is writable (WAL
keeps ``-wal`` and ``-shm`` files beside it), it is in WAL mode, not writable by group/others (problem) nor
readable by them (warning), and it holds the control topic (1 partition) and the events topic.
"""

from __future__ import annotations

import ipaddress
import os
import sqlite3
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError, ValidationError
from ledger.log import open_log
from ledger.log.kafka_security import KafkaSecurity, redact_url, security_for
from ledger.sdk.home import Home, kafka_log_options

OK, WARN, PROBLEM = "ok", "warn", "problem"
WANT_REPLICATION = 3  # a production cluster: 3 replicas, so one broker can be down and another lost
WANT_MIN_INSYNC = 2  # with 3 replicas: an acknowledged record is on 2 brokers
KAFKA_DEFAULT_MIN_INSYNC = 1  # what Kafka uses when min.insync.replicas is not set
INFINITE = "-1"
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class Finding:
    check: str
    subject: str
    status: str  # ok | warn | problem
    detail: str
    fix: str | None = None


@dataclass(frozen=True)
class Report:
    log: str  # the log URL, redacted (a hand-edited config could hold a secret; it is never printed)
    backend: str
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return all(f.status != PROBLEM for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "log": self.log, "backend": self.backend,
                "findings": [asdict(f) for f in self.findings]}


def diagnose(home: Home, url: str) -> Report:
    """Check the log at ``url`` (the home's, or ``--log``) as the home uses it."""
    if url.startswith("kafka://"):
        return Report(redact_url(url), "kafka", _kafka(home, url))
    if url.startswith("memory://"):
        return Report(url, "memory", [Finding("durability", url, WARN, "in-process log: nothing survives the process",
                                              "use the embedded SQLite log or Kafka for a real ledger")])
    path = Path(url[len("sqlite://"):] if url.startswith("sqlite://") else url)
    return Report(f"sqlite://{path}", "sqlite", check_sqlite(path, home.control_topic, home.topic))


# ---------------------------------------------------------------------------------------------- Kafka


def _kafka(home: Home, url: str) -> list[Finding]:
    from ledger.log.kafka import KafkaLog  # lazily: the SQLite path needs no Kafka client

    subject = redact_url(url).partition("?")[0][len("kafka://"):]
    try:
        security = security_for(url, home.config.get("kafka"))
        log = open_log(url, **kafka_log_options(url, home.config.get("kafka")))
    except ValidationError as e:
        return [Finding("settings", e.field, PROBLEM, e.reason, "fix the setting in the URL or config.json's "
                        "\"kafka\" object (README, Kafka security)")]
    except LedgerError as e:
        return [*_security(security, subject), Finding("connect", subject, PROBLEM, e.message, e.hint)]
    assert isinstance(log, KafkaLog)
    try:
        prefix = home.topic_for("")
        existing = [t for t in log.topics() if t.startswith(prefix)]
        required = {home.control_topic: 1, home.topic: int(home.config.get("partitions", 1))}
        topics = [*required, *sorted(t for t in existing if t not in required)]
        layout = log.layout(topics)
    except LedgerError as e:
        return [*_security(security, subject), Finding("connect", subject, PROBLEM, e.message, e.hint)]
    finally:
        log.close()
    found = [*_security(security, subject),
             Finding("connect", subject, OK, f"cluster {layout.cluster_id}: {layout.brokers} broker(s)")]
    return found + judge_kafka(layout, required, log.bootstrap)


def judge_kafka(layout: Any, required: dict[str, int], servers: str) -> list[Finding]:
    """Findings for every topic of ``layout`` (a ``ledger.log.kafka.ClusterLayout``); ``required``: topic ->
    the partitions it must have (control: exactly; events: as configured)."""
    out: list[Finding] = []
    for t in layout.topics:
        alter = (f"kafka-configs.sh --bootstrap-server {servers} --alter --entity-type topics "
                 f"--entity-name {t.name} --add-config")
        if not t.exists:
            out.append(Finding("topic", t.name, PROBLEM if t.name in required else WARN, "does not exist",
                               "run `tokenledger init` for this home (it creates the ledger topics with the right "
                               "settings), or create it with kafka-topics.sh"))
            continue
        out.append(_partitions(t, required))
        out.append(_replication(t, layout.brokers))
        out.append(_min_insync(t, alter))
        ts = t.configs.get("message.timestamp.type")
        out.append(Finding("timestamp type", t.name, OK, ts) if ts == "LogAppendTime" else
                   Finding("timestamp type", t.name, WARN if ts is None else PROBLEM,
                           "not reported by the cluster" if ts is None else f"{ts}: producers choose append times",
                           f"{alter} message.timestamp.type=LogAppendTime"))
        out.append(_retention(t, alter))
    return out


def _partitions(t: Any, required: dict[str, int]) -> Finding:
    want = required.get(t.name)
    if want == 1 and t.partitions != 1:
        return Finding("partitions", t.name, PROBLEM, f"{t.partitions} partitions; the control topic must have 1 "
                       "(readers apply control events in one total order)",
                       "recreate the control topic with 1 partition and copy its records in order")
    if want is not None and t.partitions != want:
        return Finding("partitions", t.name, WARN, f"{t.partitions} partitions, config.json says {want}",
                       f"set \"partitions\": {t.partitions} in config.json (agents are placed by the topic's count; "
                       "never add partitions to a topic with records: keys would move)")
    return Finding("partitions", t.name, OK, str(t.partitions))


def _replication(t: Any, brokers: int) -> Finding:
    want = min(WANT_REPLICATION, max(brokers, 1))
    if t.replication_factor < want:
        return Finding("replication", t.name, PROBLEM, f"factor {t.replication_factor} on {brokers} brokers: losing "
                       "one broker can lose acknowledged records",
                       f"raise it to {want} with kafka-reassign-partitions.sh")
    if brokers < WANT_REPLICATION:
        return Finding("replication", t.name, WARN, f"factor {t.replication_factor}, only {brokers} broker(s): no "
                       "redundancy", f"production: {WANT_REPLICATION} brokers, replication factor {WANT_REPLICATION}, "
                       f"min.insync.replicas {WANT_MIN_INSYNC} (compose/)")
    if t.in_sync < t.replication_factor:
        return Finding("replication", t.name, WARN, f"factor {t.replication_factor}, {t.in_sync} in sync: "
                       "under-replicated now", "check the brokers that fell out of sync")
    return Finding("replication", t.name, OK, f"factor {t.replication_factor}")


def _min_insync(t: Any, alter: str) -> Finding:
    raw = t.configs.get("min.insync.replicas")
    try:
        m = KAFKA_DEFAULT_MIN_INSYNC if raw is None else int(raw)
    except ValueError:
        return Finding("min.insync.replicas", t.name, PROBLEM, f"unreadable value {raw!r}",
                       f"{alter} min.insync.replicas={WANT_MIN_INSYNC}")
    shown = f"{m}" + (" (not reported; Kafka's default)" if raw is None else "")
    rf = t.replication_factor
    if m > rf:
        return Finding("min.insync.replicas", t.name, PROBLEM, f"{shown} > replication factor {rf}: every append "
                       "fails", f"{alter} min.insync.replicas={max(1, min(WANT_MIN_INSYNC, rf - 1))}")
    if rf >= WANT_REPLICATION and m < WANT_MIN_INSYNC:
        return Finding("min.insync.replicas", t.name, PROBLEM, f"{shown} with factor {rf}: an acknowledged record "
                       "may be on one broker only", f"{alter} min.insync.replicas={WANT_MIN_INSYNC}")
    if rf > 1 and m == rf:
        return Finding("min.insync.replicas", t.name, WARN, f"{shown} = replication factor: one broker down blocks "
                       "every append", f"{alter} min.insync.replicas={rf - 1}")
    return Finding("min.insync.replicas", t.name, OK, shown)


def _retention(t: Any, alter: str) -> Finding:
    ms, size, policy = (t.configs.get(k) for k in ("retention.ms", "retention.bytes", "cleanup.policy"))
    finite = [f"{k}={v}" for k, v in (("retention.ms", ms), ("retention.bytes", size))
              if v is not None and v != INFINITE]
    if policy is not None and "compact" in policy:
        finite.append(f"cleanup.policy={policy}")
    if finite:
        return Finding("retention", t.name, PROBLEM, f"{', '.join(finite)}: the cluster deletes ledger records",
                       f"{alter} retention.ms=-1,retention.bytes=-1,cleanup.policy=delete")
    missing = [k for k, v in (("retention.ms", ms), ("retention.bytes", size)) if v is None]
    if missing:
        return Finding("retention", t.name, WARN, f"{', '.join(missing)} not reported by the cluster",
                       f"{alter} retention.ms=-1,retention.bytes=-1")
    return Finding("retention", t.name, OK, "infinite (retention.ms=-1, retention.bytes=-1)")


def _security(sec: KafkaSecurity, servers: str) -> list[Finding]:
    out: list[Finding] = []
    summary = ", ".join(f"{k}={v}" for k, v in sec.summary().items())
    hosts = [s.rpartition(":")[0].strip("[]") for s in servers.split(",")]
    if not sec.tls and not all(_loopback(h) for h in hosts):
        out.append(Finding("security", servers, WARN, f"{summary}: records and credentials cross the network "
                           "unencrypted", "use security=ssl or sasl_ssl (README, Kafka security)"))
    elif sec.tls and not sec.check_hostname:
        out.append(Finding("security", servers, WARN, f"{summary}: the broker's certificate is not checked "
                           "against its name", "drop check_hostname=false once the certificate names the host"))
    elif sec.sasl and not sec.tls and sec.sasl_mechanism == "PLAIN":
        out.append(Finding("security", servers, WARN, f"{summary}: PLAIN sends the password unencrypted",
                           "use security=sasl_ssl"))
    else:
        out.append(Finding("security", servers, OK, summary))
    out.extend(Finding("secret file", ref.field, WARN, f"{ref.file} is readable by group or others",
                       f"chmod 600 {ref.file}")
               for ref in sec.secrets()
               if ref.file is not None and os.path.exists(ref.file) and os.stat(ref.file).st_mode & 0o077)
    return out


def _loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------- SQLite


def check_sqlite(path: Path, control_topic: str, events_topic: str) -> list[Finding]:
    """The embedded log's file, read-only (``mode=ro``): nothing is created, migrated or re-moded."""
    subject = str(path)
    if not path.exists():
        return [Finding("file", subject, PROBLEM, "does not exist", "run `tokenledger init` for this home")]
    if not path.is_file():
        return [Finding("file", subject, PROBLEM, "not a regular file", "point the home's log at the SQLite file")]
    out: list[Finding] = []
    access = [w for w, flag in (("read", os.R_OK), ("write", os.W_OK)) if not os.access(path, flag)]
    out.append(Finding("file", subject, PROBLEM, f"this user cannot {' or '.join(access)} it",
                       f"run as the file's owner, or chmod u+rw {path}") if access else
               Finding("file", subject, OK, f"{path.stat().st_size:,} bytes"))
    if not os.access(path.parent, os.W_OK | os.X_OK):
        out.append(Finding("directory", str(path.parent), PROBLEM, "not writable: WAL mode needs its -wal and "
                           "-shm files beside the log", f"chmod u+rwx {path.parent}"))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o022:
        out.append(Finding("permissions", subject, PROBLEM, f"mode {mode:o}: others can change or delete records",
                           f"chmod 600 {path}"))
    elif mode & 0o044:
        out.append(Finding("permissions", subject, WARN, f"mode {mode:o}: others can read every agent's spend",
                           f"chmod 600 {path}"))
    else:
        out.append(Finding("permissions", subject, OK, f"mode {mode:o}"))
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            journal = str(db.execute("PRAGMA journal_mode").fetchone()[0])
            topics = dict(db.execute("SELECT name, partitions FROM topics").fetchall())
        finally:
            db.close()
    except sqlite3.Error as e:
        out.append(Finding("database", subject, PROBLEM, f"not a readable tokenledger log: {e}",
                           "restore the file from a backup, or point the home at the right one"))
        return out
    out.append(Finding("journal mode", subject, OK, journal) if journal.lower() == "wal" else
               Finding("journal mode", subject, PROBLEM, f"{journal}: readers block the writer and a crash can "
                       "lose more", f"sqlite3 {path} 'PRAGMA journal_mode=WAL' (tokenledger sets it on open)"))
    for topic, exact in ((control_topic, True), (events_topic, False)):
        n = topics.get(topic)
        if n is None:
            out.append(Finding("topic", topic, PROBLEM, "does not exist in the file",
                               "run `tokenledger init` for this home"))
        elif exact and n != 1:
            out.append(Finding("partitions", topic, PROBLEM, f"{n} partitions; the control topic must have 1",
                               "recreate the log"))
        else:
            out.append(Finding("topic", topic, OK, f"{n} partition(s)"))
    return out
