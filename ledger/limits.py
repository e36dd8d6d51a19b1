"""Every bound the ledger enforces, named with its unit. Pure constants; no I/O.

Inputs beyond these are rejected with a ValidationError (from SDK/CLI) or quarantined with
RejectCode.OVERSIZED / INVALID_FIELD (on the log), never truncated or clamped.
"""

MAX_ID_CHARS = 256  # agent, key, interaction, rule ids
MAX_LABEL_CHARS = 1024  # context labels, operation names, free text
MAX_LABELS = 64  # entries in a context's labels map
MAX_TOKENS = 10**12  # any token count in one event (a trillion: far above any real call)
MAX_BYTES_COUNT = 10**15  # bytes read / written in one data event (a petabyte)
MAX_COUNT = 10**12  # time slices, jobs, megabytes, milli-weights
MAX_MICROS = 10**15  # money in one field, micro-USD (a billion dollars)
MAX_RATE_MICROS_PER_MTOK = 10**12  # price-book rates, micro-USD per million tokens ($1M/MTok)
MIN_EVENT_TIME_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z
MAX_EVENT_TIME_US = 7_258_118_400_000_000  # 2200-01-01T00:00:00Z
MAX_DURATION_US = 10 * 365 * 86_400 * 10**6  # ten years

MAX_BATCH_EVENTS = 1_000  # events in one signed batch
MAX_RECORD_BYTES = 1_048_576  # one record on the log (a signed batch), 1 MiB
MAX_EVENT_BYTES = 262_144  # one encoded event, 256 KiB
MAX_REJECTED_ORIGINAL_BYTES = 200_000  # a dead letter carries the original record up to this size

HASH_BYTES = 32  # SHA-256
SIGNATURE_BYTES = 64  # Ed25519
PUBLIC_KEY_BYTES = 32  # Ed25519 raw public key
EVENT_ID_HEX_CHARS = 32  # 128-bit event ids, lower-case hex

DUPLICATE_WINDOW_EVENTS = 4_096  # recent event ids per signer remembered to detect duplicates

assert MAX_EVENT_BYTES < MAX_RECORD_BYTES
assert MIN_EVENT_TIME_US < MAX_EVENT_TIME_US
