"""Text from outside shown safely: a source's secrets redacted, control characters escaped.

``redact`` is how a source is shown anywhere (the run summary, ``--json``, the live view's
page, ``/stats.json``, ``/metrics``): a stream URL's credentials and query values become
``***``. ``printable`` is how a label, a name or a path is shown on a terminal or in a
Prometheus label: a control character (an escape sequence, a newline, a carriage return, a
bidirectional override) becomes its escape (``\\x1b``, ``\\n``, ``\\u202e``), so it can neither
forge a line of a table nor drive the terminal.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

HIDDEN = "***"
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Control (Cc), format (Cf: bidirectional overrides, zero-width joiners) and the Unicode line and
# paragraph separators (Zl, Zp).
_UNSAFE_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")
_ASCII_SAFE = re.compile(r"[\x20-\x7e]*")


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else \
        f"\\U{code:08x}"


def printable(text: object) -> str:
    """``text`` with every control character escaped (``"a\\x1b[2Jb\\n"`` -> ``a\\x1b[2Jb\\n``
    as visible characters); anything else, including non-ASCII letters, as it is."""
    text = str(text)
    if _ASCII_SAFE.fullmatch(text):  # the common case, at no cost
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _UNSAFE_CATEGORIES else c
                   for c in text)


def _hide_values(part: str) -> str:
    """``a=1&b=2`` -> ``a=***&b=***``; a value without a key is hidden whole."""
    if not part:
        return part
    hidden = []
    for item in re.split(r"([&;])", part):
        if item in ("&", ";") or not item:
            hidden.append(item)
        else:
            key, equals, _ = item.partition("=")
            hidden.append(f"{key}={HIDDEN}" if equals else HIDDEN)
    return "".join(hidden)


def redact(source: object) -> str:
    """A source as it may be shown: a URL's user and password (``rtsp://user:pass@host``) and
    the values of its query and fragment (``?token=SECRET``) replaced by ``***``; a camera
    index, a file or a folder as it is."""
    text = str(source)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        authority = f"{HIDDEN}@{authority.rsplit('@', 1)[1]}"
    tail, hash_sign, fragment = tail.partition("#")
    path, question, query = tail.partition("?")
    return (f"{scheme}{sep}{authority}{path}{question}{_hide_values(query)}{hash_sign}"
            f"{_hide_values(fragment)}")


def has_secrets(source: object) -> bool:
    """Whether ``redact`` would hide part of ``source`` (a URL's user, password or query
    values): such a source travels in a private file, not on a command line."""
    return redact(source) != str(source)


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"\\<>]+")


def redact_urls(value: Any) -> Any:
    """Every URL inside ``value`` (a string, or the strings of a list or dict, as a deploy's
    commands and a device's unit hold them: ``--source rtsp://user:pass@cam``) redacted."""
    if isinstance(value, str):
        return _URL.sub(lambda m: redact(m.group(0)), value) if "://" in value else value
    if isinstance(value, dict):
        return {k: redact_urls(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_urls(v) for v in value)
    return value
