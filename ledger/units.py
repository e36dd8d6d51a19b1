"""Unit conversions, each defined once. Pure constants; no I/O.

Quantities on the log and in views are integers in the unit their name ends with (``*_us``
microseconds, ``*_micros`` micro-USD, ``*_milli`` thousandths); these are the factors between
those units and the ones people and upstream formats use.
"""

NS_PER_US = 1_000  # OpenTelemetry timestamps are nanoseconds; event times are microseconds
US_PER_S = 1_000_000
US_PER_HOUR = 3_600 * US_PER_S
US_PER_DAY = 24 * US_PER_HOUR
US_PER_WEEK = 7 * US_PER_DAY

MICROS_PER_USD = 1_000_000  # money is integer micro-USD: exact, and a cent is 10_000 of them
TOKENS_PER_MTOK = 1_000_000  # rates are quoted per million tokens ("MTok"), as providers publish them
MILLI = 1_000  # fractions (confidences, scores, weights) travel as integer thousandths: no floats on the log

assert US_PER_DAY == 86_400_000_000
