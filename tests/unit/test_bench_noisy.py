"""The noisy-neighbour bench's own arithmetic and output (bench/noisy.py): its goals, the
table's reading of lost pings, the plot, and the refusal of noise kinds it lacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tenantvisor.bench import noisy


def _phase(label: str, lost: int, p99: float, pps: int, dropped: int = 0) -> dict[str, Any]:
    return {
        "label": label,
        "ping": {"sent": 600, "lost": lost, "replies": 600 - lost, "max_gap_ms": 20.0,
                 "outage_ms": 0.0, "lost_ms": 0.0, "rtt_ms_p50": 0.5, "rtt_ms_p99": p99,
                 "rtt_ms_max": max(p99, 3.0), "rtts_ms": [0.4, 0.5, p99][: 3 - (lost > 300)]},
        "tcp": {"mbps": 10.0, "retransmits": 2} if lost < 300 else {"error": "unable to connect"},
        "shared_link_pps": pps, "vswitchd_cpu": 0.3, "a_dropped_by_limits": dropped,
        "a_limits_in_force": {}, "fabric_links_timed_out": 0,
    }  # fmt: skip


def _result(limited_lost: int = 0, limited_p99: float = 3.0) -> dict[str, Any]:
    phases = {
        "quiet": _phase("quiet (A idle)", 0, 2.0, 900),
        "unlimited": _phase("loop, no limits", 590, noisy.LOST_MS, 30000),
        "limited": _phase("loop, limits", limited_lost, limited_p99, 2900, 30000),
        "quiet_again": _phase("quiet again", 0, 2.5, 900),
    }
    return {
        "benchmark": "noisy-neighbour", "topology": "ring", "seconds_per_phase": 20.0,
        "ping_interval_s": 0.01, "tcp_rate": "10M", "default_limits": noisy.DEFAULT_LIMITS,
        "blast_fps": 2000.0, "noise": ["loop"], "phases": phases,
        "goals": noisy.goals(phases), "reference": noisy.REFERENCE, "seconds": 120.0,
    }  # fmt: skip


def test_the_goals_are_no_loss_and_p99_within_twice_the_quiet_runs() -> None:
    assert noisy.goals(_result()["phases"]) == {
        "limited_no_loss": True, "limited_p99_within_2x": True,
    }  # fmt: skip
    assert not noisy.goals(_result(limited_lost=1)["phases"])["limited_no_loss"]
    assert not noisy.goals(_result(limited_p99=4.1)["phases"])["limited_p99_within_2x"]
    assert noisy.goals(_result(limited_p99=4.0)["phases"])["limited_p99_within_2x"]


def test_the_table_says_lost_where_most_pings_were_and_names_iperf_errors() -> None:
    text = noisy.table(_result())
    row = next(ln for ln in text.splitlines() if ln.startswith("loop, no limits"))
    assert "lost" in row and "err" in row and "30000" in row
    assert "iperf3 loop, no limits: unable to connect" in text
    assert "x500.0 without limits, x1.5 with limits" in text
    assert "goal: with limits, B loses no ping" in text and "NOT met" not in text


def test_iperf_rates_read_as_megabits() -> None:
    assert noisy.rate_mbps("10M") == 10.0 and noisy.rate_mbps("500K") == 0.5
    assert noisy.rate_mbps("1G") == 1000.0 and noisy.rate_mbps("2000000") == 2.0
    assert noisy.rate_mbps("fast") is None


def test_the_plot_is_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "noisy.png"
    noisy.plot(_result(), str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unknown_noise_kind_is_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert noisy.run_noisy(noise="loop,flood") == 2
    assert "expected some of loop, control" in capsys.readouterr().err


def test_the_control_noise_is_a_second_controller_hammering_with_flow_mods(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A's vswitch X listens for a second controller (NoisyNet.hammer_url); the noise
    starts a hammer process there for the whole phase and kills it after."""
    started: list[tuple[str, float, str]] = []

    class Fake:
        def __init__(self, target: str, seconds: float, rate: object = None,
                     kind: str = "echo") -> None:  # fmt: skip
            started.append((target, seconds, kind))
            self.stopped = False

        def stop(self) -> None:
            self.stopped = True

    monkeypatch.setattr(noisy, "HammerProcess", Fake)
    net = type("Net", (), {"hammer_url": "tcp:127.0.0.1:7777"})()
    n = noisy.NOISES["control"]()
    n.start(net, noisy.Config(seconds=6.0, warmup=1.5))  # type: ignore[arg-type]
    proc = n.proc  # type: ignore[attr-defined]
    n.stop(net)  # type: ignore[arg-type]
    assert started == [("tcp:127.0.0.1:7777", 12.5, "flow_mod")] and proc.stopped
