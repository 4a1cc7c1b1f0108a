"""The limits and timeouts every connection of a worker enforces.

Rules:
1. Built once per worker from the options (`Limits.from_options`) and never changed: a
   driver reads them, the pure checks of request_head.py take them as a value.
2. No defaults here: each lives once, with its help text and precedents, in config.py.
3. Driver-neutral names: `max_head_size` is the option limit_request_head_size (formerly
   h11_max_incomplete_event_size, after h11's max_incomplete_event_size); every driver
   enforces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gunrunner.config import Options


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Sizes in bytes, times in seconds."""

    limit_request_line: int  # longer: 414
    limit_request_fields: int  # more header fields: 431
    limit_request_field_size: int  # a longer field (name and value): 431
    max_head_size: int  # a longer request head, whole or unfinished: 431
    max_body_size: int  # a longer body: 413 (0: no limit)
    header_timeout: float  # a request head slower than this: 408
    body_timeout: float  # the app waits longer for body bytes: 408
    send_timeout: float  # a client reads nothing of its response for longer: dropped
    keepalive_timeout: float  # an idle connection between requests lives this long

    @classmethod
    def from_options(cls, options: Options) -> Limits:
        return cls(
            limit_request_line=options.limit_request_line,
            limit_request_fields=options.limit_request_fields,
            limit_request_field_size=options.limit_request_field_size,
            max_head_size=options.limit_request_head_size,
            max_body_size=options.max_body_size,
            header_timeout=options.header_timeout,
            body_timeout=options.body_timeout,
            send_timeout=options.send_timeout,
            keepalive_timeout=options.keepalive_timeout,
        )
