"""The migration bench's own arithmetic (bench/migration.py): which pings were lost and
when they were sent, percentiles, where the mover goes."""

from __future__ import annotations

import pytest

from tenantvisor.bench.migration import SPARE_PORT, lost_pings, percentile, targets


def _ping(replies: dict[int, float], sent: int) -> str:
    lines = ["PING 10.0.0.16 (10.0.0.16) 56(84) bytes of data."]
    lines += [f"[{t:.6f}] 64 bytes from 10.0.0.16: icmp_seq={k} ttl=64 time=0.5 ms"
              for k, t in sorted(replies.items())]  # fmt: skip
    lines += ["", "--- 10.0.0.16 ping statistics ---",
              f"{sent} packets transmitted, {len(replies)} received, x% packet loss"]  # fmt: skip
    return "\n".join(lines) + "\n"


def test_lost_pings_are_placed_between_the_replies_around_them() -> None:
    replies = {k: 1000.0 + k * 0.01 for k in range(1, 11) if k not in (4, 5, 6)}
    sent, lost_at = lost_pings(_ping(replies, 12), 0.01)
    assert sent == 12
    # 4-6 between replies 3 and 7; 11 and 12 after the last reply, one interval apart
    assert lost_at == pytest.approx([1000.04, 1000.05, 1000.06, 1000.11, 1000.12])


def test_lost_before_the_first_reply_and_nothing_lost() -> None:
    sent, lost_at = lost_pings(_ping({3: 5.03, 4: 5.04}, 4), 0.01)
    assert sent == 4 and lost_at == pytest.approx([5.01, 5.02])
    assert lost_pings(_ping({1: 1.0, 2: 1.01}, 2), 0.01) == (2, [])


def test_no_summary_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        lost_pings("ping: connect: Network is unreachable\n", 0.01)


def test_percentile_is_nearest_rank() -> None:
    xs = [float(x) for x in range(1, 21)]
    assert percentile(xs, 50) == 10.0
    assert percentile(xs, 99) == 20.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([float(x) for x in range(1, 23)], 50) == 11.0  # rank 11 of 22
    assert percentile([], 50) is None


def test_the_mover_goes_round_the_edges_and_home() -> None:
    got = targets(10)
    assert got[:7] == [(f"e{i}", SPARE_PORT) for i in range(1, 8)]
    assert got[7] == ("e8", 2) and got[8] == ("e1", SPARE_PORT)


def test_a_block_reports_its_reconfiguration_in_the_runs_own_rule_installs() -> None:
    """The yardsticks: the same run's tenant BARRIERs, alone and after a FLOW_MOD, so a
    noisy machine's figures can be read as a ratio (the moves' p50 over the installs')."""
    from tenantvisor.bench.migration import Move, summarise_block

    moves = []
    for i, ms in enumerate((6.0, 8.0, 10.0)):
        mv = Move("exact", "api", i, "e8:2", "e1:10", reconfiguration_ms=ms)
        mv.lost, mv.lost_after_told = 1, 0
        moves.append(mv)
    tcp = {"retransmits": 0}
    got = summarise_block(moves, tcp, {}, None, [0.5, 0.5], [2.0, 2.0, 4.0])
    assert got["tenant_barrier_ms"]["p50"] == 0.5 and got["tenant_rule_install_ms"]["p50"] == 2.0
    assert got["reconfiguration_in_rule_installs"] == 4.0
    assert summarise_block(moves, tcp, {}, None, [], [])["reconfiguration_in_rule_installs"] is None


def test_the_yardstick_rule_is_added_and_deleted_strictly() -> None:
    """What the bench adds it deletes again (the same match and priority, strict)."""
    from os_ken.ofproto import ofproto_v1_3 as ofp

    from tenantvisor.bench.migration import yardstick_rule

    add, delete = yardstick_rule(1, True), yardstick_rule(2, False)
    assert add[1] == delete[1] == ofp.OFPT_FLOW_MOD
    assert (add[25], delete[25]) == (ofp.OFPFC_ADD, ofp.OFPFC_DELETE_STRICT)
    assert add[30:32] == delete[30:32] and add[48:] == delete[48:]  # priority, match
