"""The one boundary between what comes from outside and what is stored (DESIGN.md, "Faces
and boundaries"): the limits on size and nesting, and text PostgreSQL can store.

Input from people (API bodies, DAG files, params, jobs) is checked here and refused with
a message naming the field and the limit; output of tasks (stdout, stderr, errors,
outputs) is cleaned here, visibly. Pure Python, no Django: the API, the spec, the engine
and the CLI share it, so every way in has the same limits. The README lists them.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# A request body, a DAG file, a job: the largest accepted, in bytes.
MAX_BODY_BYTES = 4 * 1024 * 1024
# Lists and mappings inside one another: the deepest accepted, in levels.
MAX_DEPTH = 50
# Values in one free-form value (params, an http task's json): the most accepted.
MAX_VALUES = 10_000

# PostgreSQL refuses NUL in text and jsonb; a lone surrogate cannot be encoded as UTF-8.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
NUL_SHOWN = "\u2400"  # ␀, SYMBOL FOR NULL
SURROGATE_SHOWN = "\ufffd"  # �, REPLACEMENT CHARACTER


class LimitExceeded(ValueError):
    """Input over one of the limits above; the message names the limit."""


def check_size(size: int, what: str = "the request body") -> None:
    """Raises LimitExceeded when `size` (bytes) is over MAX_BODY_BYTES."""
    if size > MAX_BODY_BYTES:
        raise LimitExceeded(
            f"{what} is larger than {MAX_BODY_BYTES:,} bytes, the most FlowForge accepts"
        )


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def check_json_depth(body: bytes) -> None:
    """Raises LimitExceeded when JSON text nests lists and objects deeper than MAX_DEPTH.

    Read from the text before it is parsed, so that no parser recurses that deep; text
    that is not JSON passes, for the parser to reject.
    """
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKET)
    depth = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        if depth > MAX_DEPTH:
            raise LimitExceeded(f"the JSON is nested more than {MAX_DEPTH} levels deep")


def unstorable(value: Any, path: str = "") -> list[tuple[str, str]]:
    """(path, problem) for each string in `value`, a JSON-like value (keys included), that
    cannot be stored: `("params.name", "contains a NUL character ...")`."""
    problems: list[tuple[str, str]] = []
    _walk(value, path, problems, 0)
    return problems


def describe(problems: list[tuple[str, str]], what: str = "") -> list[str]:
    """The sentences of unstorable()'s problems: `params.name: contains ...`."""
    return [f"{what}{path or 'the value'}: {problem}" for path, problem in problems]


def _walk(value: Any, path: str, problems: list[tuple[str, str]], depth: int) -> None:
    if isinstance(value, str):
        if problem := _text_problem(value):
            problems.append((path, problem))
    elif depth > MAX_DEPTH:
        problems.append((path, f"is nested more than {MAX_DEPTH} levels deep"))
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (problem := _text_problem(key)):
                problems.append((path, f"has a key that {problem}"))
                continue
            _walk(item, f"{path}.{key}" if path else str(key), problems, depth + 1)
    elif isinstance(value, list | tuple):
        for position, item in enumerate(value):
            _walk(item, f"{path}[{position}]", problems, depth + 1)


def _text_problem(text: str) -> str | None:
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character (\\u0000), which cannot be stored; remove it"
    return (
        f"contains a lone surrogate (\\u{ord(found.group()):04x}), which is not valid "
        "Unicode text and cannot be stored; send UTF-8 text"
    )


def clean_text(text: str) -> str:
    """`text` with NUL shown as ␀ and lone surrogates as �: what can be stored of it."""
    if _UNSTORABLE.search(text) is None:
        return text
    return _UNSTORABLE.sub(lambda m: NUL_SHOWN if m.group() == "\x00" else SURROGATE_SHOWN, text)


def clean(value: Any) -> Any:
    """A JSON-like value with every string (keys included) cleaned by clean_text, and
    NaN and the infinities, which JSON cannot hold, written as the strings "NaN" etc."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)  # "NaN", "Infinity", "-Infinity"
    if isinstance(value, dict):
        return {clean_text(k) if isinstance(k, str) else k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(item) for item in value]
    return value
