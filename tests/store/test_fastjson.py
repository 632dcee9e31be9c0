"""The store's JSON-RPC parser reads exactly what python-ovs's own parser reads."""

from __future__ import annotations

import json
import random
from typing import Any

import ovs.json
import ovs.jsonrpc
import pytest

from tenantvisor.store.fastjson import FastConnection, FastParser, FastSession, install

ATOMS: list[Any] = [1, -2, 3.5, True, False, None, 'a"b\\', "x{y}[z]", "\\", "é☃", "", '\\\\"',
                    9223372036854775807, -9223372036854775808, "\t\n"]  # fmt: skip


def _value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth > 3 or r < 0.3:
        return rng.choice(ATOMS)
    if r < 0.65:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {f"{rng.choice(ATOMS)}{i}": _value(rng, depth + 1) for i in range(rng.randint(0, 4))}


def _read(parser_class: type, chunks: list[str]) -> list[Any]:
    """Feed chunks as ovs.jsonrpc.Connection.recv does, one parser per message."""
    out, pending, parser = [], "", None
    for chunk in chunks:
        pending += chunk
        while pending:
            if parser is None:
                parser = parser_class()
            pending = pending[parser.feed(pending) :]
            if not parser.is_done():
                break
            out.append(parser.finish())
            parser = None
    return out


def test_random_messages_cut_anywhere_read_as_python_ovs_reads_them() -> None:
    rng = random.Random(7)
    for trial in range(2000):
        msgs = [{"id": trial, "params": _value(rng)} for _ in range(rng.randint(1, 3))]
        text = "".join(
            json.dumps(m, separators=(",", ":"), ensure_ascii=rng.random() < 0.5)
            + rng.choice(["", " ", "\n"])
            for m in msgs
        )
        n = rng.randint(0, min(8, len(text) - 1))
        cuts = sorted(rng.sample(range(1, len(text)), n))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        got = _read(FastParser, chunks)
        assert got == msgs
        assert got == _read(ovs.json.Parser, chunks)


def test_a_string_split_inside_an_escape() -> None:
    text = json.dumps({"a": 'x\\"y', "b": [1]})
    for i in range(1, len(text)):
        assert _read(FastParser, [text[:i], text[i:]]) == [json.loads(text)]


@pytest.mark.parametrize("bad", ["42", '"s"', "{]"])
def test_what_is_not_a_message_is_an_error_string(bad: str) -> None:
    p = FastParser()
    p.feed(bad)
    if p.is_done():
        assert isinstance(p.finish(), str)
    else:
        assert p.finish() == "unexpected end of input"


def test_only_the_given_session_is_changed() -> None:
    mine = ovs.jsonrpc.Session.open("unix:/nonexistent/a.sock")
    theirs = ovs.jsonrpc.Session.open("unix:/nonexistent/b.sock")
    try:
        assert install(mine)
        assert type(mine) is FastSession and type(theirs) is ovs.jsonrpc.Session
        assert not install(mine)  # already done
        assert issubclass(FastConnection, ovs.jsonrpc.Connection)
    finally:
        mine.close()
        theirs.close()
