"""Broker quirks we work around, kept in one place.

Tansu, the embedded broker, differs from Apache Kafka in ways that matter to us:
- a consumer-group join with librdkafka's default 45 s session timeout takes ~23 s;
  6 s brings it to ~3 s (manual assignment has no such cost, and is what we use);
- its ListOffsets answer for the latest offset is wrong, so uncached watermarks and
  `auto.offset.reset=latest` cannot be trusted (watermarks cached from fetch responses
  are right); we read from committed offsets, start-up markers or the beginning instead;
- memory storage: a broker restart loses every topic and offset.
"""

from __future__ import annotations

# Consumer-group session timeout that keeps Tansu's join near 3 s (harmless on Kafka).
GROUP_SESSION_TIMEOUT_MS = 6000
