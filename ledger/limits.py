"""Every bound the ledger enforces, named with its unit. Pure constants; no I/O.

Inputs beyond these are rejected with a ValidationError (from SDK/CLI) or quarantined with
RejectCode.OVERSIZED / INVALID_FIELD (on the log), never truncated or clamped. Each name ends with
its unit (``_BYTES``, ``_CHARS``, ``_EVENTS``, ``_RECORDS``, ``_US``, ``_MICROS``...); each comment
says why the value is what it is. The relations the code relies on between bounds are asserted at
the end, so changing one bound alone cannot silently break another.

Only this module (and ``ledger.units`` for unit factors) defines ``MAX_*`` constants: other modules
import them from here (tests/ledger/test_limits.py enforces it).
"""

from ledger.units import US_PER_DAY, US_PER_S

# ------------------------------------------------------------------ machine integers

INT64_MAX = 2**63 - 1  # an Avro long, a Kafka offset and a DuckDB BIGINT all hold at most this
INT32_MAX = 2**31 - 1  # an Avro int (partitions, small ranks)

# ------------------------------------------------------------------ event fields

MAX_ID_CHARS = 256  # agent, key, interaction, rule, scope, reservation ids: long enough for any UUID or path-like id
MAX_LABEL_CHARS = 1024  # context labels, operation names, free text: a sentence, not a document
MAX_LABELS = 64  # entries in a context's labels map: tags, not a payload
MAX_TOKENS = 10**12  # any token count in one event (a trillion: far above any real call)
MAX_DATA_BYTES = 10**15  # bytes read / written in one data event (a petabyte)
MAX_COUNT = 10**12  # time slices, jobs, megabytes, milli-weights: a trillion of anything is a unit mix-up
MAX_MICROS = 10**15  # money in one field, micro-USD (a billion dollars)
MAX_RATE_MICROS_PER_MTOK = 10**12  # price-book rates, micro-USD per million tokens ($1M/MTok)
MAX_SERVICE_TIER_CHARS = 32  # a provider's service tier name: 'batch', 'flex', 'priority', 'default', ...
MAX_MATCH_RULE_CHARS = 4096  # one model-matching clause as JSON (the catalog's longest is far shorter)
MAX_MATCH_RANK = 10**9  # |rank| of a model-matching rule
MAX_CLAUSE_DEPTH = 8  # nesting of or/and in one matching clause: the catalog's deepest is 2
MAX_CLAUSE_TERMS = 256  # clauses in one or/and list
MAX_RESOLUTION_HOPS = 3  # provider/ prefix splits and provider-only rules followed for one model id: no loop runs on
# a call's reported cost (a gateway's, a provider's) differs from the ledger's when they are this far apart: more
# than COST_DISCREPANCY_PERMILLE of the larger, and more than COST_DISCREPANCY_FLOOR_MICROS (sub-cent calls round)
COST_DISCREPANCY_PERMILLE = 10  # 1 %
COST_DISCREPANCY_FLOOR_MICROS = 100  # $0.0001
MAX_MATCH_CACHE_ENTRIES = 65_536  # (provider, model id) pairs whose matching rules a price book remembers
MIN_EVENT_TIME_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z: earlier is a seconds/microseconds mix-up
MAX_EVENT_TIME_US = 7_258_118_400_000_000  # 2200-01-01T00:00:00Z: later is a nanoseconds/microseconds mix-up
MAX_DURATION_US = 10 * 365 * US_PER_DAY  # ten years: any longer window or duration is a unit mix-up

# ------------------------------------------------------------------ trusted time (the skew window)

# An event's claimed time must lie in [append time - behind, append time + ahead] of its record, unless the
# operator changed the window with a clock_policy control event. Behind is wider than ahead: a batch lingers in
# an emitter (and retries) before it is appended, so honest events arrive late, never early; ahead only covers
# clock error between the agent and the log.
DEFAULT_MAX_CLOCK_BEHIND_US = 5 * 60 * US_PER_S  # five minutes
DEFAULT_MAX_CLOCK_AHEAD_US = 60 * US_PER_S  # one minute
MAX_CLOCK_SKEW_US = US_PER_DAY  # an operator's window wider than a day is a unit mix-up (backfill is a grant)
MAX_BACKFILL_AGE_US = MAX_DURATION_US  # a backfill grant reaches at most ten years back

# ------------------------------------------------------------------ records on the log

MAX_BATCH_EVENTS = 1_000  # events in one signed batch: one signature amortised over many events
KAFKA_DEFAULT_MESSAGE_BYTES = 1_048_576  # Kafka's default producer max.request.size (broker max.message.bytes ~ same)
KAFKA_RECORD_OVERHEAD_BYTES = 48_576  # batch header (61 B), record header (<= 21 B), with room: Kafka's framing
# key + value of one record on the log (a signed batch and its signer id), enforced by every backend at append:
# one number everywhere, so a record the embedded log accepts also fits a Kafka cluster with default settings
MAX_RECORD_BYTES = KAFKA_DEFAULT_MESSAGE_BYTES - KAFKA_RECORD_OVERHEAD_BYTES  # 1,000,000 bytes
MAX_EVENT_BYTES = 262_144  # one encoded event, 256 KiB: a call's metadata, never its prompt
MAX_JSON_TEXT_CHARS = MAX_EVENT_BYTES // 4  # evidence_json / tables_json of one derived event: a quarter of an event
MAX_REJECT_REASON_CHARS = 4 * MAX_LABEL_CHARS  # a dead letter's reason: a validation message with its value
MAX_REJECTED_ORIGINAL_BYTES = 200_000  # a dead letter carries the original record up to this size
# envelope, ids, topic, code, hashes of a dead letter: under 6 KiB even with 4-byte characters in every id
# (tests/ledger/test_limits.py measures the worst case); the rest is margin
DEAD_LETTER_ENVELOPE_BYTES = 16_384
# what the journal keeps of a quarantined record's evidence (JSON, so ASCII: one byte a character), so the
# dead letter (original + reason + evidence + envelope) still fits in MAX_EVENT_BYTES
MAX_DEAD_LETTER_EVIDENCE_CHARS = (MAX_EVENT_BYTES - MAX_REJECTED_ORIGINAL_BYTES - 4 * MAX_REJECT_REASON_CHARS
                                  - DEAD_LETTER_ENVELOPE_BYTES)

HASH_BYTES = 32  # SHA-256
SIGNATURE_BYTES = 64  # Ed25519
PUBLIC_KEY_BYTES = 32  # Ed25519 raw public key
EVENT_ID_HEX_CHARS = 32  # 128-bit event ids, lower-case hex

# readers (ledger.integrity.chain): recent event ids per signer kept to reject a re-delivered or re-used id.
# Small because every reader keeps it for every signer; the emitter's window below contains it, so an honest
# emitter never appends an id readers would reject as a duplicate.
DUPLICATE_WINDOW_EVENTS = 4_096
# The emitter's idempotency window (ledger.sdk.emitter), kept on disk in the home next to the chain head and
# rebuilt from the log when that is lost. An event id (from an idempotency key, or from the content) is
# remembered while it is among the signer's last IDEMPOTENCY_WINDOW_EVENTS events OR its event time is within
# IDEMPOTENCY_WINDOW_US of the signer's newest event time, and never beyond MAX_IDEMPOTENCY_WINDOW_EVENTS.
# ~100 bytes of SQLite per remembered id: 100 MB for a signer at the hard cap.
IDEMPOTENCY_WINDOW_EVENTS = 100_000  # events: a retry this many events later is still recognised
IDEMPOTENCY_WINDOW_US = 7 * US_PER_DAY  # event time: a retry stamped up to a week later is still recognised
MAX_IDEMPOTENCY_WINDOW_EVENTS = 1_000_000  # events: the hard cap on one signer's window, whatever their times
MAX_EMITTER_CONTROL_READ_RECORDS = 1_000  # control records one read brings while an emitter catches up its key ring

# ------------------------------------------------------------------ log backends

MAX_PARTITIONS = 1024  # partitions of one topic, on every backend: far above the processes one host runs
MAX_TOPIC_CHARS = 249  # Kafka's own limit on a topic name
MAX_KAFKA_REQUEST_BYTES = MAX_RECORD_BYTES + KAFKA_RECORD_OVERHEAD_BYTES  # the largest record the log carries, framed
# signed records an emitter hands to one Kafka append: in flight together (the idempotent producer keeps up
# to 5 requests per connection in order), so a batch-100 emitter pays one round trip per 500 events
KAFKA_RECORDS_PER_APPEND = 5
MAX_KAFKA_POLL_RECORDS = 1_000  # records one poll hands back; a read returns at most max_records of them

# ------------------------------------------------------------------ integrity

# Kafka offsets are signed 64-bit, so no partition, and therefore no tree, holds more leaves.
# Bounds the sizes a proof to verify may claim (memory bounds a tree held here long before).
MAX_TREE_LEAVES = INT64_MAX
# An inclusion path has at most ceil(log2 size) hashes and a consistency proof one more, so 64
# bounds every valid proof for MAX_TREE_LEAVES; a longer one is refused before any hashing.
MAX_PROOF_HASHES = 64
MAX_REGISTRATION_RECORDS = 64  # control records one proof may carry (a key's registration + rotations)
MAX_PROOF_FILE_EVENTS = 10_000  # events one proof file proves (~2 KB each at a million leaves: ~20 MB)
MAX_PROOF_FILE_CHECKPOINTS = 1_024  # checkpoints one proof file refers to (one per partition its events are in)
# a proof holds at most: its event's record, two checkpoint records and the registrations, each at most
# one log record (1 MiB), hex-encoded (x2), plus 64 KiB of JSON; anything larger is refused before parsing
MAX_PROOF_FILE_BYTES = 2 * MAX_RECORD_BYTES * (3 + MAX_REGISTRATION_RECORDS) + 65_536

# ------------------------------------------------------------------ files the CLI reads (ledger.files.read_bounded)

MAX_CONFIG_FILE_BYTES = 1_048_576  # a home's config.json: a log URL and a few operator keys, 1 MiB is generous
MAX_KEY_FILE_BYTES = 65_536  # one key file: a JSON document of four short fields
MAX_PRICE_FILE_BYTES = 16 * 1024 * 1024  # `prices load`: every model of every provider a few times over
# a view manifest: one SHA-256 line per published Parquet part; a long-running processor publishes a part
# per batch, so allow many (a busy year of parts) before the manifest itself becomes the problem
MAX_VIEW_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_VIEW_MANIFEST_RETRIES = 8  # re-reads of a manifest a publish replaced while it was being checked
# Parquet part files one append-mode view may have in a manifest: compaction (processors.runtime.publish)
# keeps part sizes falling geometrically (about log2 of the view's rows), this is the hard ceiling, so a
# reader opens, and a manifest lists, a bounded number of files per view however long the processor runs
MAX_VIEW_PARTS = 32

# ------------------------------------------------------------------ economics

MAX_SPLIT_PARTS = 10_000  # shares in one largest-remainder split: the parties of one interaction, with room
MAX_USD_TEXT_CHARS = 64  # characters in one USD string given to parse_usd: MAX_MICROS needs 17
MAX_PRICE_BOOK_ENTRIES = 100_000  # entries in one price book file: every model of every provider, many times over
MAX_REPUTATION_SCORE_POINTS = 100  # econ's reputation scores run from 0 to 100
MAX_MONEY_MULTIPLIER = 1_000  # any multiplier of money given as an argument (econ): 1000x is a typo
MAX_DEPOSIT_MULTIPLIER_MILLI = MAX_MONEY_MULTIPLIER * 1_000  # a deposit's multiplier, in thousandths
MAX_CMR_SIZE_BYTES = 2048  # CWEP's size budget for one cost metering record's JSON (published, not enforced)
MAX_INTERACTIONS = 10**12  # interactions in one count: same scale as MAX_COUNT
MAX_CROSSOVER_INTERACTIONS = 10_000  # interactions one crossover analysis may scan: it is quadratic in them
MAX_QUEUE_MS = 10**12  # milliseconds of estimated queue time (30 years)
MAX_PRIORITY_RANK = INT32_MAX  # priorities are small ranks; anything larger is a unit mix-up
MAX_TRUST_VALUE = 1000.0  # |value| of one trust event: seed 002's whole weekly trust budget
MAX_HALF_LIFE_US = 10 * 366 * US_PER_DAY  # ten years; longer is "never decays" in practice
# trust events kept one by one per subject (the latest by event time); older ones are settled into one decayed
# sum per (dimension, half-life), so a subject's trust state stays this size however long the log grows
TRUST_RECENT_EVENTS = 64
MAX_BUDGET_MULTIPLIER = 100  # a budget multiplier above 100x is a typo, not a policy
MAX_ANOMALIES = 1_000_000  # anomalies counted in one usage review
MAX_THROTTLE_LEVEL = 7  # the first level whose delay is capped (2 ** 6 s > 60 s); higher adds nothing
MAX_BUDGET_INTERVAL_US = 10 * 366 * US_PER_DAY  # budget reset windows up to ten years
MAX_BUDGET_PERCENT = 1000  # soft / hard / emergency percentages above 1000% are typos
# A budget's running counters (consumed, emergency used, unpriced calls) saturate here instead of overflowing a
# DuckDB BIGINT / Avro long: 4,612 valid data events of a petabyte read and written each already pass 2**63 - 1.
# A saturated counter is past every ceiling (allocations are far smaller), so every decision it feeds is a
# refusal or a breach: saturating never lets anyone spend more, and no valid event can crash the processor.
MAX_BUDGET_COUNTER = INT64_MAX

# ------------------------------------------------------------------ telemetry sources

MAX_MIN_AGENTS = 1_000_000  # agents; a larger attribution threshold can never be met by a real run
MAX_IMPORT_FILE_BYTES = 256 * 1024 * 1024  # one input file is read whole; larger files are a problem
MAX_IMPORT_FILES = 100_000  # files in one import call (after expanding directories)
MAX_PROBLEM_VALUE_CHARS = 120  # characters of an offending value kept in an ImportProblem: one terminal line

# ------------------------------------------------------------------ processors

MAX_RUNNER_DATA_RECORDS = 200  # data records per poll (each a signed batch of up to MAX_BATCH_EVENTS events)
# allocations derives several rows per priced call and interaction (a call, its allocations, a split per method):
# at 200 records a batch its rows peaked at 315 MB; at 100, 279 MB for 4% more CPU (1M-event benchmark log)
MAX_ALLOCATIONS_DATA_RECORDS = 100
MAX_RUNNER_CONTROL_RECORDS = 10_000  # control records per poll: drained first, they are few and small
MAX_RUNNER_BATCH_BYTES = 8 * 1024 * 1024  # stop adding data records to a batch past this many bytes
# derived records read from the outbox, produced and cleared at a time (each at most MAX_RECORD_BYTES): one
# batch's derived records can be tens of MB, more than a processor's DuckDB memory limit holds at once
MAX_OUTBOX_CHUNK_RECORDS = 8
# Kafka (no clock over the log): a live reader folds only records stamped this long before its own clock read
# before polling, so a record appended after the poll, stamped by a clock up to this far behind the reader's
# (or sent this long before it arrived), still sorts after them (ledger.log.order). Also the added latency.
MERGED_ORDER_MARGIN_MS = 100
# a worker that ran this long (seconds) without dying is healthy: its next failure restarts it after the
# shortest backoff again, so a crash once a day never waits the longest backoff a crash loop reached
RESTART_BACKOFF_RESET_S = 60.0
MAX_REASON_CHARS = 200  # policy_refused reasons: the validation message, cut to fit an alert

# ------------------------------------------------------------------ CLI and report output

MAX_PROBLEM_ROWS = 50  # import problems shown in the table; --json lists all of them
MAX_PRICE_OVERRIDES = 1_000  # --price options in one reprice
MAX_SERIES_POINTS = 200  # points per line on a chart (downsampled evenly, last point kept)
MAX_REPUTATION_SAMPLES = 60  # score evaluations per agent for the reputation chart
MAX_TABLE_ROWS = 25  # rows per HTML table (the JSON has them all)

# ------------------------------------------------------------------ relations the code relies on

# one event always fits in one record, so a batch of one can carry any valid event
assert MAX_EVENT_BYTES < MAX_RECORD_BYTES
assert MIN_EVENT_TIME_US < MAX_EVENT_TIME_US
# a re-delivered batch is recognised whole: the window remembers at least one full batch per signer
assert DUPLICATE_WINDOW_EVENTS >= MAX_BATCH_EVENTS
# the emitter remembers every id readers remember: a retry readers would reject is deduplicated before signing
assert IDEMPOTENCY_WINDOW_EVENTS >= DUPLICATE_WINDOW_EVENTS
assert MAX_IDEMPOTENCY_WINDOW_EVENTS >= IDEMPOTENCY_WINDOW_EVENTS
# a dead letter (original + reason + evidence + envelope) is itself a valid event
assert MAX_DEAD_LETTER_EVIDENCE_CHARS > 0
assert MAX_DEAD_LETTER_EVIDENCE_CHARS <= MAX_JSON_TEXT_CHARS
assert (MAX_REJECTED_ORIGINAL_BYTES + 4 * MAX_REJECT_REASON_CHARS + MAX_DEAD_LETTER_EVIDENCE_CHARS
        + DEAD_LETTER_ENVELOPE_BYTES) <= MAX_EVENT_BYTES
# a full-size record fits in one processor batch (the runner also always takes a first record)
assert MAX_RUNNER_BATCH_BYTES >= MAX_RECORD_BYTES
# a chunk of the outbox holds no more bytes than a processor's input batch
assert MAX_OUTBOX_CHUNK_RECORDS * MAX_RECORD_BYTES <= MAX_RUNNER_BATCH_BYTES
# a Kafka request frames any record the log accepts
assert MAX_KAFKA_REQUEST_BYTES > MAX_RECORD_BYTES
# ...and fits a cluster with Kafka's default message size
assert MAX_KAFKA_REQUEST_BYTES <= KAFKA_DEFAULT_MESSAGE_BYTES
# event times and durations are int64 microseconds, and their sum stays one
assert MAX_EVENT_TIME_US + MAX_DURATION_US < INT64_MAX
# a sum of a few amounts of money stays inside an Avro long / DuckDB BIGINT
assert 8 * MAX_MICROS <= INT64_MAX
# every valid Merkle proof fits in MAX_PROOF_HASHES
assert (MAX_TREE_LEAVES - 1).bit_length() + 1 <= MAX_PROOF_HASHES
# the throttle level cap is where the doubling delay first exceeds the 60 s ceiling (seed 003)
assert 2 ** (MAX_THROTTLE_LEVEL - 1) * US_PER_S > 60 * US_PER_S >= 2 ** (MAX_THROTTLE_LEVEL - 2) * US_PER_S
# every single spend (two petabytes of data at most) fits under a saturated counter's bound
assert 2 * MAX_DATA_BYTES < MAX_BUDGET_COUNTER <= INT64_MAX
assert DEFAULT_MAX_CLOCK_BEHIND_US <= MAX_CLOCK_SKEW_US and DEFAULT_MAX_CLOCK_AHEAD_US <= MAX_CLOCK_SKEW_US

# ------------------------------------------------------------------ telemetry in (importers, the spend guard)
MAX_DECISION_TIMEOUT_S = 3_600.0  # seconds: a longer wait is a unit mix-up (milliseconds given as seconds)
MAX_COUNT_DIGITS = 13  # MAX_TOKENS (10**12) has 13 digits: longer digit strings are refused before int()
MAX_SPAN_DEPTH = 256  # ancestor spans followed up from one span: agent call trees are tens deep, not hundreds
# one OTLP/HTTP export (POST /v1/traces), as received and again after Content-Encoding (a gzip bomb stops here): the
# OpenTelemetry Collector's default max_request_body_size; an SDK's batch of 512 spans is well under 1 MiB
MAX_OTLP_BODY_BYTES = 20 * 1024 * 1024
assert MAX_OTLP_BODY_BYTES <= MAX_IMPORT_FILE_BYTES  # a body is imported as one input (importers.import_bytes)

# ------------------------------------------------------------------ alert webhooks (processors.deliveries)
MAX_ARRAY_ITEMS = 64  # entries in one array field of an event (a sink's alert kinds): a list of names, not a payload
MAX_WEBHOOK_URL_CHARS = 2_048  # a sink's URL: what browsers and proxies reliably accept
MIN_WEBHOOK_SECRET_BYTES = 16  # a signing secret: below 128 bits it can be guessed
MAX_WEBHOOK_SECRET_BYTES = 1_024  # a signing secret (or its file): a key, not a document
MAX_DELIVERIES_IN_FLIGHT = 8  # webhook POSTs one delivery worker has open at once (threads, sockets)
WEBHOOK_TIMEOUT_S = 10.0  # seconds one POST may take (connect + answer): a receiver slower than this failed
MAX_WEBHOOK_RESPONSE_BYTES = 4_096  # bytes of a receiver's answer read: only its status counts, the start is evidence
MAX_DELIVERY_ERROR_CHARS = 512  # a delivery attempt's error: the reason and the start of the receiver's answer
MAX_DELIVERY_ATTEMPTS = 100  # attempts of one delivery: a retry schedule longer than this is a unit mix-up
MAX_DELIVERY_DELAY_US = US_PER_DAY  # one retry delay: waiting longer than a day is a unit mix-up
# the production retry schedule (exponential backoff); TOKENLEDGER_WEBHOOK_RETRY (ledger.sdk.home) overrides it
WEBHOOK_FIRST_DELAY_US = 10 * US_PER_S  # after the first failed attempt
WEBHOOK_BACKOFF_FACTOR = 2  # each later delay is this times the one before
MAX_WEBHOOK_BACKOFF_FACTOR = 10  # a larger factor reaches the maximum delay after one or two retries: a typo
WEBHOOK_MAX_DELAY_US = 60 * 60 * US_PER_S  # no delay longer than an hour
WEBHOOK_MAX_ATTEMPTS = 12  # then it is failed: 11 waits (10 s, 20 s, ... 2,560 s, 1 h, 1 h) = about 3.4 hours of trying
assert WEBHOOK_FIRST_DELAY_US <= WEBHOOK_MAX_DELAY_US <= MAX_DELIVERY_DELAY_US
assert 1 <= WEBHOOK_MAX_ATTEMPTS <= MAX_DELIVERY_ATTEMPTS
assert 1 <= WEBHOOK_BACKOFF_FACTOR <= MAX_WEBHOOK_BACKOFF_FACTOR

# ------------------------------------------------------------------ the front door (tokenledger serve)
MAX_TOKEN_TTL_US = 3650 * US_PER_DAY  # an API token's lifetime: longer is a typo, or should be --expires never
MAX_TOKEN_RATE_PER_S = 100_000.0  # requests per second one API token may be allowed
MAX_TOKEN_NOTE_CHARS = 200  # a token's note (what it is for)
MAX_TOKEN_CHARS = 128  # an Authorization header's token is looked at only up to this length (ours are 60)
MAX_RATE_LIMIT_BUCKETS = 100_000  # per-token rate buckets one service process keeps (least recently used forgotten)
MAX_METRICS_BUDGET_SERIES = 5_000  # budget rows /metrics exports (the most utilised first): a scrape stays bounded
MAX_READY_LAG_RECORDS = 10**12  # the largest ?max_lag= /readyz accepts
MAX_PROBLEM_VALUE_CHARS = 200  # a value echoed in a problem+json answer: never a whole request back
MAX_RESERVATION_WAIT_US = 30 * US_PER_S  # the longest long-poll of a reservation's decision (GET ...?wait=)
MAX_TIME_TEXT_CHARS = 40  # the longest RFC 3339 time read from a query: 'YYYY-MM-DDTHH:MM:SS.ffffff+hh:mm' is 32
MAX_RESERVATION_TTL_S = MAX_DURATION_US // US_PER_S  # a reservation's ttl_s over HTTP: the longest duration, in s

# ------------------------------------------------------------------ Kafka security, schema registry, routing
MAX_SECRET_FILE_BYTES = 65_536  # a password or passphrase file; anything larger is not one
MAX_OAUTH_TOKEN_BYTES = 65_536  # a bearer token printed by oauth_token_command (JWTs are a few KiB)
MAX_KAFKA_SETTING_CHARS = 4_096  # one URL parameter or config value (a path, a user name, a command line)
MAX_SASL_USERNAME_CHARS = 1_024  # a SASL user name (managed clusters use API keys of ~16-64 characters)
MAX_ROUTING_OVERRIDES_BYTES = 1 << 20  # an overrides file larger than this (1 MiB) is ignored, not read
MAX_ESCALATION_PATTERN_CHARS = 4_096  # the escalation regex's length bound (characters)
MAX_SCHEMA_REGISTRY_BODY_BYTES = 1_048_576  # one schema per request
MAX_REGISTRY_URL_CHARS = 2_048  # a longer URL is a mistake, not a registry
MAX_REGISTRY_RESPONSE_BYTES = 1_048_576  # one answer holds one schema: 1 MiB is far above any real one
MAX_REGISTRY_SUBJECT_CHARS = 255  # a topic name (249 at most in Kafka) plus "-value"
MAX_SHARDS = 256  # instances of one processor: far above what its partitions can use, low enough to catch typos
# the exchange of a sharded processor (processors.runtime.exchange)
MAX_EXCHANGE_RECORD_BYTES = MAX_RECORD_BYTES - 65_536  # one exchange record, its header and items (room to spare)
MAX_EXCHANGE_REFUSED_BYTES = 262_144  # of a refused record's bytes an exchange record carries (the size is kept)
MAX_EXCHANGE_READ_RECORDS = 50  # exchange records an owner reads from one router per poll
# the longest a --group member may go between polls (its work on its shards between two polls) before it leaves
MAX_GROUP_POLL_INTERVAL_MS = 300_000
EXCHANGE_IDLE_MARK_MS = 200  # an idle router looks for data its marks do not cover yet at most this often
