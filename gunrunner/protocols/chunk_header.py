"""The chunk-header grammar of RFC 9112 7.1, for h11's chunked body reader.

h11 matches a chunk header with `chunk_header_re` of h11/_readers.py,
`HEXDIG{1,20} (";" .*)? OWS CRLF`, which lets through whitespace after a size with no
extension (`5 \\r\\n`) and any byte but LF in an extension (control characters too), and
refuses whitespace before the ";" that the RFC allows. A proxy in front that reads
such a chunk header another way ends the body somewhere else than we do: a request
smuggling vector (gunicorn refuses both).

Rules:
1. chunk = chunk-size [ chunk-ext ] CRLF, and chunk-ext = *( BWS ";" BWS chunk-ext-name
   [ BWS "=" BWS chunk-ext-val ] ), chunk-ext-val = token / quoted-string (RFC 9112
   7.1.1, RFC 9110 5.6.2 and 5.6.4). Anything else is h11's "illegal chunk header": 400.
2. h11 still does all the parsing: `install()` only swaps its compiled pattern for ours,
   once, at import of the driver (h11's ChunkedReader reads that module global on every
   call). The size keeps h11's own bound (20 hex digits) and group name.
3. If h11 no longer has that global, nothing is swapped and a warning says so;
   tests/unit/test_http11_driver.py fails loudly in that case (and pyproject.toml pins
   h11 below its next minor release).
4. The swap is process-wide: in a worker it also applies to h11-based HTTP clients the
   app uses (httpx, httpcore), which then refuse the same malformed chunk headers from
   an upstream server.
"""

from __future__ import annotations

import logging
import re

log = logging.getLogger(__name__)

_BWS = rb"[ \t]*"
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
# qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text; quoted-pair = "\" ( HTAB / SP
# / VCHAR / obs-text ). No control character, in or out of quotes.
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_EXTENSION = (
    _BWS + rb";" + _BWS + _TOKEN + rb"(?:" + _BWS + rb"=" + _BWS + rb"(?:" + _TOKEN + rb"|"
    + _QUOTED + rb"))?"
)  # fmt: skip
CHUNK_HEADER = re.compile(
    rb"(?P<chunk_size>[0-9A-Fa-f]{1,20})(?P<chunk_ext>(?:" + _EXTENSION + rb")*)\r\n"
)


def install() -> bool:
    """Make h11's chunked reader use CHUNK_HEADER; False if h11 has no such hook."""
    try:
        from h11 import _readers
    except ImportError:
        _readers = None  # type: ignore[assignment]
    if not isinstance(getattr(_readers, "chunk_header_re", None), re.Pattern):
        log.warning(
            "this h11 version reads chunk headers its own way; chunk headers are "
            "checked by h11's rules only (gunrunner's stricter RFC 9112 check is off)"
        )
        return False
    _readers.chunk_header_re = CHUNK_HEADER
    return True
