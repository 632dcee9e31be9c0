"""A fast JSON-RPC parser for the store's own OVSDB session.

python-ovs parses JSON-RPC with a pure-Python, character-by-character lexer unless its C
extension (``ovs._json``) is built, and the PyPI wheel does not build it: a 300 kB update
(1000 rules) took 470 ms to parse, most of a write's cost.  This module finds where a
message ends with one regular expression (whole strings and brackets only, in C) and decodes
it with the standard library's C decoder.

It is hooked into the store's session only (`install`): the session's connections become
`FastConnection`s, whose `parser` attribute hands out `FastParser`s.  Other users of
python-ovs in the process (the DNB nodes' OVSDB connections) are untouched.
"""

from __future__ import annotations

import json
import re
from typing import Any

import ovs.jsonrpc

# a whole string, a bracket, or the start of a string that runs past the chunk's end
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]]|"')
# the rest of a string begun in an earlier chunk: its body, stopping at the closing quote
_STRING_REST = re.compile(r'(?:[^"\\]|\\.)*')
_SPACE = " \t\r\n"


class FastParser:
    """python-ovs's `ovs.json.Parser` interface (feed, is_done, finish) for one JSON-RPC
    message: an object or an array at the top level."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._depth = 0
        self._in_string = False  # inside a string that began in an earlier chunk
        self._escape = False  # ... whose last chunk ended with a backslash
        self._done = False
        self._error: str | None = None
        self._started = False

    def feed(self, s: str) -> int:
        """Consume the message's part of `s`; returns how many characters were used."""
        if self._done:
            return 0
        i, n = 0, len(s)
        if not self._started:
            while i < n and s[i] in _SPACE:
                i += 1
            if i == n:
                return n
            if s[i] not in "{[":
                self._fail(f"expected a JSON object or array, got {s[i]!r}")
                return n
            self._started = True
        if self._in_string:
            if self._escape:
                i += 1
                self._escape = False
            if i >= n:
                self._parts.append(s)
                return n
            rest = _STRING_REST.match(s, i)
            assert rest is not None  # it matches the empty string at least
            j = rest.end()
            if j < n and s[j] == '"':
                self._in_string = False
                i = j + 1
            else:
                self._escape = j < n  # a lone backslash at the very end
                self._parts.append(s)
                return n
        for m in _TOKEN.finditer(s, i):
            t = m.group()
            c = t[0]
            if c == '"':
                if len(t) == 1:  # a string running past the end of this chunk
                    self._in_string = True
                    self._escape = _ends_in_escape(s[m.end() :])
                    break
                continue
            if c in "{[":
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 0:
                    end = m.end()
                    self._parts.append(s[:end])
                    self._done = True
                    return end
        self._parts.append(s)
        return n

    def _fail(self, message: str) -> None:
        self._error = message
        self._done = True

    def is_done(self) -> bool:
        return self._done

    def finish(self) -> Any:
        """The message, or an error string (as python-ovs's parser returns them)."""
        if self._error is not None:
            return self._error
        if not self._done:
            return "unexpected end of input"
        try:
            return json.loads("".join(self._parts))
        except ValueError as exc:
            return f"bad JSON: {exc}"


def _ends_in_escape(body: str) -> bool:
    """Whether `body` (a string's text so far) ends inside an escape (odd backslashes)."""
    run = len(body) - len(body.rstrip("\\"))
    return run % 2 == 1


class FastConnection(ovs.jsonrpc.Connection):
    """A python-ovs JSON-RPC connection whose messages are parsed by `FastParser`."""

    @property
    def parser(self) -> FastParser:
        p: FastParser | None = self.__dict__.get("_fast_parser")
        if p is None:
            p = self.__dict__["_fast_parser"] = FastParser()
        return p

    @parser.setter
    def parser(self, value: Any) -> None:
        self.__dict__["_fast_parser"] = value if isinstance(value, FastParser) else None


class FastSession(ovs.jsonrpc.Session):
    """A session whose new connections are `FastConnection`s."""

    def run(self) -> None:
        super().run()
        rpc = self.rpc
        if rpc is not None and type(rpc) is ovs.jsonrpc.Connection and not rpc.input:
            rpc.__dict__.pop("parser", None)
            rpc.__class__ = FastConnection


def install(session: Any) -> bool:
    """Make `session` (a python-ovs `jsonrpc.Session`) parse with `FastParser`; False if it
    is not the class this was written for (then it keeps its own parser)."""
    if type(session) is not ovs.jsonrpc.Session:
        return False
    session.__class__ = FastSession
    return True


__all__ = ["FastConnection", "FastParser", "FastSession", "install"]
