"""PQL text → tokens, each with its 0-based offset in the text (the parser's error positions)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from audiencehub.pql.ast import PQLSyntaxError

PUNCTUATION = "()[],."
OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
_OPERATOR_CHARS = "=!<>&|"
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


@dataclass(frozen=True)
class Token:
    """``kind`` is ``ident``, ``string``, ``number``, ``op`` (a comparison), ``=>``, one of ``()[],.`` or ``eof``.

    ``value`` is the identifier's name, the decoded string, the number (int or float) or the operator;
    ``quoted`` marks a backquoted identifier (never a keyword); ``text`` is the token as written.
    """

    kind: str
    value: str | int | float
    text: str
    pos: int
    quoted: bool = False

    def describe(self) -> str:
        """The token for an error message: ``'and'``, ``'"US"'``, ``end of input``."""
        if self.kind == "eof":
            return "end of input"
        text = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return f"'{text}'"


def _is_ident_start(ch: str) -> bool:
    return ch == "_" or ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def _is_ident_char(ch: str) -> bool:
    return _is_ident_start(ch) or _is_digit(ch)


def _is_digit(ch: str) -> bool:
    return "0" <= ch <= "9"


def tokenize(text: str) -> Iterator[Token]:
    """The tokens of ``text``, ending with an ``eof`` token at ``len(text)``; PQLSyntaxError for a bad character,
    an unterminated string or an unknown operator.

    Lazy, so that a parser reports the first problem in reading order (``CHAIN(`` before the ``:`` after it).
    """
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in PUNCTUATION:
            yield Token(ch, ch, ch, i)
            i += 1
        elif _is_ident_start(ch):
            end = i + 1
            while end < n and _is_ident_char(text[end]):
                end += 1
            yield Token("ident", text[i:end], text[i:end], i)
            i = end
        elif ch == "`":
            end = text.find("`", i + 1)
            if end == -1:
                raise PQLSyntaxError("unterminated `quoted` identifier: expected a closing '`'", i)
            if end == i + 1:
                raise PQLSyntaxError("expected a name between the backquotes but found '``'", i)
            yield Token("ident", text[i + 1 : end], text[i : end + 1], i, quoted=True)
            i = end + 1
        elif ch in "\"'":
            token = _string(text, i)
            yield token
            i += len(token.text)
        elif _is_digit(ch) or (ch == "-" and i + 1 < n and _is_digit(text[i + 1])):
            token = _number(text, i)
            yield token
            i += len(token.text)
        elif ch in _OPERATOR_CHARS:
            end = i + 1
            while end < n and text[end] in _OPERATOR_CHARS:
                end += 1
            run = text[i:end]
            if run in OPERATORS:
                yield Token("op", run, run, i)
            elif run == "=>":
                yield Token("=>", run, run, i)
            else:
                hint = " (PQL compares with '=')" if run == "==" else ""
                raise PQLSyntaxError(f"unknown operator '{run}'{hint}", i)
            i = end
        else:
            raise PQLSyntaxError(f"unexpected character {ch!r}", i)
    yield Token("eof", "", "", n)


def _string(text: str, start: int) -> Token:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return Token("string", "".join(out), text[start : i + 1], start)
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        code = text[i + 1] if i + 1 < len(text) else ""
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            i += 2
        elif code == "u" and _is_hex(text[i + 2 : i + 6]):
            out.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
        else:
            raise PQLSyntaxError(f"unknown escape '\\{code}' in a string", i)
    raise PQLSyntaxError(f"unterminated string: expected a closing {quote}", start)


def _is_hex(digits: str) -> bool:
    return len(digits) == 4 and all(c in "0123456789abcdefABCDEF" for c in digits)


def _number(text: str, start: int) -> Token:
    n = len(text)
    i = start + 1 if text[start] == "-" else start
    while i < n and _is_digit(text[i]):
        i += 1
    is_float = False
    if i + 1 < n and text[i] == "." and _is_digit(text[i + 1]):
        is_float = True
        i += 1
        while i < n and _is_digit(text[i]):
            i += 1
    if i < n and text[i] in "eE":
        j = i + 1
        if j < n and text[j] in "+-":
            j += 1
        if j < n and _is_digit(text[j]):
            is_float = True
            i = j
            while i < n and _is_digit(text[i]):
                i += 1
    written = text[start:i]
    value: int | float
    try:
        value = float(written) if is_float else int(written)
    except ValueError:  # more digits than int() converts
        raise PQLSyntaxError(f"the number '{written[:20]}...' is too long", start) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise PQLSyntaxError(f"the number '{written}' is out of range", start)
    return Token("number", value, written, start)
