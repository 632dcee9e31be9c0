"""The fuzzer of the tenant-facing decoder and vswitch handling, bounded for CI.

`make fuzz` runs a million inputs (tenantvisor.bench.fuzz); here a few thousand: the seeds
(what os-ken-based controllers send), random structured messages drawn by hypothesis, and
the mutation loop.  Each goes through framing, decoding and handling with real endpoints
and pswitch sessions; a finding is a crash, a hang, malformed or leaking output, or a
request left unanswered.  The last tests check that the oracles do catch such bugs.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.bench.fuzz import corpus
from tenantvisor.bench.fuzz.harness import (
    LEVELS,
    NETWORKS,
    Config,
    Finding,
    Harness,
    build_network,
    config,
)
from tenantvisor.bench.fuzz.run import finding_key, run_builtin
from tenantvisor.openflow import codec
from tenantvisor.virtual.endpoint import VSwitchEndpoint


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


def test_every_seed_is_handled_without_a_finding(harness: Harness) -> None:
    seeds = corpus.seeds()
    cfgs = [Config.parse(s) for s in seeds]
    assert {c.network for c in cfgs} == set(NETWORKS)
    assert {c.of10_controller for c in cfgs} == {False, True}
    assert any(c.raw_hello for c in cfgs) and any(c.refusing for c in cfgs)
    for seed in seeds:
        harness.run(seed)


def test_a_flow_mod_reaches_the_pswitch_and_a_barrier_is_answered(harness: Harness) -> None:
    seed = next(s for s in corpus.seeds() if Config.parse(s).network == "single")
    out = harness.run(config() + seed[2:] + codec.header(4, ofp.OFPT_BARRIER_REQUEST, 99))
    assert not out.closed and out.replies >= 1


def test_the_configuration_bytes_round_trip() -> None:
    for network in NETWORKS:
        for level in LEVELS:
            cfg = Config.parse(config(True, network, 8, True, True, True, level, True))
            assert (cfg.network, cfg.level, cfg.chunk) == (network, level, 8)
            assert cfg.of10_controller and cfg.raw_hello and cfg.refusing and cfg.second


# --- random structured messages, drawn by hypothesis --------------------------------------------
_FIELDS = sorted(corpus._OXM_SIZES)
u8, u16, u32, u64 = (st.integers(0, (1 << n) - 1) for n in (8, 16, 32, 64))
ports = st.sampled_from(corpus.PORTS13) | u32


@st.composite
def oxms(draw: st.DrawFn) -> bytes:
    field = draw(st.sampled_from(_FIELDS) | st.integers(0, 127))
    size = corpus._OXM_SIZES.get(field, draw(st.integers(0, 16)))
    masked = draw(st.booleans())
    body = draw(st.binary(min_size=size, max_size=size)) * (2 if masked else 1)
    return struct.pack("!I", 0x8000 << 16 | field << 9 | masked << 8 | len(body)) + body


@st.composite
def actions(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["output", "set_field", "push", "pop", "group", "other"]))
    if kind == "output":
        return codec.output(draw(ports), draw(u16))
    if kind == "set_field":
        o = draw(oxms())
        return (
            struct.pack("!HH", ofp.OFPAT_SET_FIELD, 4 + len(o) + (-(4 + len(o)) % 8))
            + o
            + (bytes(-(4 + len(o)) % 8))
        )
    if kind == "push":
        t = draw(st.sampled_from([ofp.OFPAT_PUSH_VLAN, ofp.OFPAT_PUSH_MPLS, ofp.OFPAT_PUSH_PBB]))
        return struct.pack("!HHH2x", t, 8, draw(st.sampled_from([0x8100, 0x88A8, 0x8847]) | u16))
    if kind == "pop":
        return struct.pack("!HH4x", draw(st.sampled_from([ofp.OFPAT_POP_VLAN, 20, 27])), 8)
    if kind == "group":
        return struct.pack("!HHI", ofp.OFPAT_GROUP, 8, draw(st.integers(0, 9) | u32))
    return struct.pack("!HH", draw(u16), 8) + draw(st.binary(min_size=4, max_size=4))


@st.composite
def instructions(draw: st.DrawFn) -> bytes:
    out = b""
    for kind in draw(st.lists(st.sampled_from(["apply", "write", "goto", "meta", "meter",
                                               "clear"]), max_size=4)):  # fmt: skip
        if kind in ("apply", "write"):
            acts = b"".join(draw(st.lists(actions(), max_size=4)))
            t = ofp.OFPIT_APPLY_ACTIONS if kind == "apply" else ofp.OFPIT_WRITE_ACTIONS
            out += struct.pack("!HH4x", t, 8 + len(acts)) + acts
        elif kind == "goto":
            out += struct.pack("!HHB3x", ofp.OFPIT_GOTO_TABLE, 8, draw(u8))
        elif kind == "meta":
            out += struct.pack("!HH4xQQ", ofp.OFPIT_WRITE_METADATA, 24, draw(u64), draw(u64))
        elif kind == "meter":
            out += struct.pack("!HHI", ofp.OFPIT_METER, 8, draw(st.integers(0, 9) | u32))
        else:
            out += struct.pack("!HH4x", ofp.OFPIT_CLEAR_ACTIONS, 8)
    return out


@st.composite
def flow_mods(draw: st.DrawFn) -> bytes:
    match = b"".join(draw(st.lists(oxms(), max_size=5)))
    m = struct.pack("!HH", ofp.OFPMT_OXM, 4 + len(match)) + match
    body = codec.FLOW_MOD_BODY.pack(
        draw(u64), draw(u64), draw(st.integers(0, 5) | u8), draw(st.integers(0, 5) | u8),
        draw(u16), draw(u16), draw(u16), draw(st.just(ofp.OFP_NO_BUFFER) | u32),
        draw(st.just(ofp.OFPP_ANY) | ports), draw(st.just(ofp.OFPG_ANY) | u32), draw(u16),
    )  # fmt: skip
    return codec.header(4, ofp.OFPT_FLOW_MOD, draw(u32), body + m + bytes(-len(m) % 8) +
                        draw(instructions()))  # fmt: skip


@st.composite
def packet_outs(draw: st.DrawFn) -> bytes:
    acts = b"".join(draw(st.lists(actions(), max_size=4)))
    data = draw(st.sampled_from([corpus.IPV4, corpus.ARP, corpus.LLDP]) | st.binary(max_size=64))
    body = struct.pack("!IIH6x", draw(st.just(ofp.OFP_NO_BUFFER) | u32), draw(ports), len(acts))
    return codec.header(4, ofp.OFPT_PACKET_OUT, draw(u32), body + acts + data)


@st.composite
def group_mods(draw: st.DrawFn) -> bytes:
    buckets = b""
    for acts in draw(st.lists(st.lists(actions(), max_size=3), max_size=3)):
        raw = b"".join(acts)
        buckets += struct.pack("!HHII4x", 16 + len(raw), draw(u16), draw(ports),
                               draw(st.just(ofp.OFPG_ANY) | u32)) + raw  # fmt: skip
    body = struct.pack("!HBxI", draw(st.integers(0, 3) | u16), draw(st.integers(0, 4) | u8),
                       draw(st.integers(0, 9) | u32))  # fmt: skip
    return codec.header(4, ofp.OFPT_GROUP_MOD, draw(u32), body + buckets)


@st.composite
def small_messages(draw: st.DrawFn) -> bytes:
    """Any type with any body: configuration, roles, async, multipart, meters, ..."""
    t = draw(st.sampled_from([2, 5, 7, 9, 18, 20, 24, 26, 28, 29]) | st.integers(0, 40))
    body = draw(st.binary(max_size=48))
    if t == ofp.OFPT_MULTIPART_REQUEST:
        body = struct.pack("!HH4x", draw(st.integers(0, 13) | u16), draw(st.sampled_from([0, 1])))
        body += draw(st.binary(max_size=48))
    return codec.header(4, t, draw(u32), body)


configs = st.builds(
    config, network=st.sampled_from(NETWORKS), level=st.sampled_from(LEVELS),
    chunk=st.sampled_from([None, 1, 3, 8, 61]), refusing=st.booleans(), second=st.booleans(),
    spine=st.booleans(),
)  # fmt: skip
messages = flow_mods() | packet_outs() | group_mods() | small_messages()
FUZZ = settings(
    max_examples=400, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip


@FUZZ
@given(cfg=configs, msgs=st.lists(messages, min_size=1, max_size=4))
def test_structured_openflow13_messages_meet_only_documented_outcomes(
    harness: Harness, cfg: bytes, msgs: list[bytes]
) -> None:
    harness.run(cfg + b"".join(msgs))


@FUZZ
@given(cfg=configs, rnd=st.randoms(use_true_random=False))
def test_random_openflow10_messages_meet_only_documented_outcomes(
    harness: Harness, cfg: bytes, rnd: object
) -> None:
    import random

    assert isinstance(rnd, random.Random)
    msgs = b"".join(corpus.rand_message10(rnd, i) for i in range(1 + rnd.randrange(3)))
    harness.run(bytes((cfg[0] | 1, cfg[1])) + msgs)


@FUZZ
@given(rnd=st.randoms(use_true_random=False), steps=st.integers(1, 4))
def test_mutated_seeds_meet_only_documented_outcomes(
    harness: Harness, rnd: object, steps: int
) -> None:
    import random

    assert isinstance(rnd, random.Random)
    pool = corpus.seeds()
    data = rnd.choice(pool)
    for _ in range(steps):
        data = corpus.mutate(rnd, data, pool)
    harness.run(data)


# --- the mutation loop, bounded ------------------------------------------------------------------
def test_a_bounded_mutation_run_finds_nothing_and_stays_fast() -> None:
    start = time.monotonic()
    report = run_builtin(3000, seed=11, limit=2.0)
    assert report.inputs == 3000 and report.findings == {}, report.findings
    assert report.closed and report.refused  # malformed and refused inputs were reached
    assert time.monotonic() - start < 30


# --- the oracles catch what they are for ---------------------------------------------------------
def test_an_exception_the_endpoint_swallows_is_a_finding(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: VSwitchEndpoint, conn: object, xid: int, msg: bytes) -> None:
        raise KeyError("planted")

    monkeypatch.setattr(VSwitchEndpoint, "_flow_mod", broken)
    with pytest.raises(Finding) as exc:
        harness.run(config() + corpus.seeds()[0][2:])
    assert "KeyError at" in finding_key(exc.value)


def test_an_unanswered_request_is_a_finding(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(VSwitchEndpoint, "_barrier", lambda self, conn, xid: None)
    with pytest.raises(Finding, match="no answer to type 20"):
        harness.run(config() + codec.header(4, ofp.OFPT_BARRIER_REQUEST, 5))


def test_outputs_are_allowed_to_the_vports_ports_only() -> None:
    net = build_network(Config.parse(config()))
    assert {11, 12, 13, 14} <= net.allowed[7]  # the vports' ports and their paths' exits
    assert not {ofp.OFPP_FLOOD, ofp.OFPP_ALL, ofp.OFPP_NORMAL, ofp.OFPP_LOCAL} & net.allowed[7]


def test_a_hang_is_reported_with_its_input(monkeypatch: pytest.MonkeyPatch) -> None:
    def forever(self: VSwitchEndpoint, conn: object, xid: int, msg: bytes) -> None:
        while True:
            pass

    monkeypatch.setattr(VSwitchEndpoint, "_flow_mod", forever)
    report = run_builtin(3, limit=0.2)  # the first seeds are FLOW_MODs
    assert any(k.startswith("Hang") for k in report.findings), report.findings
