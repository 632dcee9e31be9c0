"""tvctl against the API served by uvicorn on a real socket: output formats and exit codes."""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import pytest

from tenantvisor.cli import tvctl
from tenantvisor.virtual.manager import SCALABILITY_LEVELS, NetworkManager, token_hash
from tests.api.conftest import ADMIN, LiveServer, build_ring


class Cli:
    """Runs `tvctl.main` in-process with --url/--token set, capturing stdout and stderr."""

    def __init__(self, live: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
        self.live = live
        self.capsys = capsys

    def run(self, token: str | None, *args: str) -> tuple[int, str, str]:
        argv = ["--url", self.live.url, *(["--token", token] if token else []), *args]
        code = tvctl.main(argv)
        out, err = self.capsys.readouterr()
        return code, out, err

    def ok(self, token: str | None, *args: str) -> str:
        code, out, err = self.run(token, *args)
        assert code == 0 and err == "", (args, err)
        return out

    def json(self, token: str | None, *args: str) -> Any:
        return json.loads(self.ok(token, "--format", "json", *args))

    def fails(self, token: str | None, *args: str) -> str:
        code, out, err = self.run(token, *args)
        assert code == 1 and out == "", (args, out)
        assert err.startswith("tvctl: ") and err.count("\n") == 1, err
        assert "Traceback" not in err
        return err.removeprefix("tvctl: ").strip()


@pytest.fixture
def cli(live: LiveServer, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(live, capsys)


def test_full_session(cli: Cli, manager: NetworkManager) -> None:
    tenant = cli.json(ADMIN, "tenant-add", "alice")
    tok = tenant["token"]
    assert tenant["name"] == "alice"

    net = cli.json(
        tok,
        "net-add",
        "--controller",
        "tcp:127.0.0.1:6653",
        "--controller",
        "ptcp:6654",
        "--network-address",
        "10.0.0.0",
        "--mask",
        "16",
    )
    n = str(net["id"])
    assert net["controller_urls"] == ["tcp:127.0.0.1:6653", "ptcp:6654:0.0.0.0"]

    # dpids in decimal, 0x-hex and colon hex
    s1 = cli.json(tok, "switch-add", n, "1")
    s2 = cli.json(tok, "switch-add", n, "0x2", "--vdpid", "00:00:00:00:00:00:0b:02")
    s3 = cli.json(tok, "switch-add", n, "00:00:00:00:00:00:00:03")
    assert [s["dpid"] for s in (s1, s2, s3)] == [1, 2, 3] and s2["vdpid"] == 0xB02

    out = cli.ok(tok, "port-add", n, "1", "1")  # table: a `key : value` record
    assert out.splitlines() == [
        f"vdpid     : {s1['vdpid_str']}",
        "vport     : 1",
        "dpid      : 00:00:00:00:00:00:00:01",
        "port      : 1",
        "kind      : edge",
        "exclusive : false",
    ]
    l1 = cli.json(tok, "port-add", n, "1", "3")["number"]
    l2 = cli.json(tok, "port-add", n, "2", "3")["number"]
    lk = cli.json(tok, "link-add", n, s1["vdpid_str"], str(l1), "0xb02", str(l2))
    assert lk["path"] == [{"src_dpid": 1, "src_port": 3, "dst_dpid": 2, "dst_port": 3}]
    host = cli.ok(tok, "host-add", n, s1["vdpid_str"], "1", "02:00:00:00:00:01")
    assert "mac   : 02:00:00:00:00:01" in host

    assert cli.ok(tok, "net-start", n) == ""
    assert manager.networks[int(n)].started

    shown = cli.ok(tok, "net-show", n)
    assert "started         : true" in shown
    assert "controller_urls : [tcp:127.0.0.1:6653, ptcp:6654:0.0.0.0]" in shown
    lines = shown.splitlines()
    at = lines.index("links:")
    assert lines[at + 1].split() == ["id", "src", "dst", "algorithm", "backup_num", "path"]
    assert set(lines[at + 2]) <= {"-", " "}
    assert lines[at + 3].split() == [
        "1",
        f"{s1['vdpid_str']}/{l1}",
        f"00:00:00:00:00:00:0b:02/{l2}",
        "spf",
        "0",
        "00:00:00:00:00:00:00:01/3->00:00:00:00:00:00:00:02/3",
    ]
    assert "routes:" not in lines and "backup paths:" not in lines  # only when there are
    at = lines.index("switches:")
    assert lines[at + 1].split() == ["vdpid", "dpids", "routing", "backup_num"]
    rows = [row.split() for row in lines[at + 3 : at + 6]]
    assert [s1["vdpid_str"], "[00:00:00:00:00:00:00:01]", "spf", "0"] in rows
    # columns are aligned: every cell of a column starts where its header starts
    ports_at = lines.index("ports:")
    header, rule, *rows = lines[ports_at + 1 : ports_at + 6]
    starts = [i for i, ch in enumerate(rule) if ch == "-" and (i == 0 or rule[i - 1] == " ")]
    assert header.split() == ["vdpid", "vport", "dpid", "port", "kind", "link", "exclusive"]
    assert [m.start() for m in re.finditer(r"\S+", header)] == starts
    for row in rows:
        assert row[starts[1] - 2 : starts[1]] == "  " and row[starts[1]] != " "

    listed = cli.ok(tok, "net-list").splitlines()
    assert listed[0].split() == [
        "id",
        "tenant",
        "started",
        "controllers",
        "switches",
        "links",
        "hosts",
    ]
    assert listed[2].split()[:3] == [n, str(tenant["id"]), "true"]
    assert cli.json(tok, "net-list")[0]["id"] == int(n)

    phys = cli.ok(tok, "phys-show")
    assert "00:00:00:00:00:00:00:05" in phys and "s1-eth3" in phys
    assert cli.json(tok, "phys-show")["switches"][0]["dpid"] == 1

    assert "networks" in cli.ok(ADMIN, "status")
    tenants = cli.ok(ADMIN, "tenant-list").splitlines()
    assert tenants[0].split() == ["id", "name", "networks"]
    assert tenants[2].split() == [str(tenant["id"]), "alice", f"[{n}]"]

    # tear down: quiet on success
    for args in (
        ("host-del", n, "1"),
        ("link-del", n, "1"),
        ("port-del", n, "0xb02", str(l2)),
        ("switch-del", n, "00:00:00:00:00:00:0b:02"),
        ("net-stop", n),
        ("net-del", n),
    ):
        assert cli.ok(tok, *args) == "", args
    assert manager.networks == {}
    assert cli.ok(ADMIN, "tenant-del", str(tenant["id"])) == ""
    assert manager.tenants == {}


def test_errors_exit_1_with_one_line(cli: Cli, manager: NetworkManager) -> None:
    tok = manager.create_tenant("alice").token
    assert cli.fails(tok, "net-show", "99") == "no virtual network 99"
    assert cli.fails(tok, "tenant-list") == "this operation needs the admin token"
    assert cli.fails("wrong", "net-list").startswith("missing or invalid token")
    assert "give --token or set TVCTL_TOKEN" in cli.fails(None, "net-list")
    n = str(manager.create_network(manager.tenants[1].id, []).id)
    assert "unknown physical dpid" in cli.fails(tok, "switch-add", n, "42")
    assert "not a datapath id" in cli.fails(tok, "switch-add", n, "zz:00")
    assert "is not an integer" in cli.fails(tok, "port-add", n, "1", "one")
    assert "is not an IP address" in cli.fails(tok, "net-add", "--controller", "tcp:x:1")
    assert "invalid choice" in cli.fails(tok, "frobnicate")
    assert "required" in cli.fails(tok, "link-add", n)
    assert "invalid choice" in cli.fails(tok, "--format", "yaml", "net-list")
    assert len(manager.networks) == 1 and manager.networks[int(n)].switches == {}


def test_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket closes
    code = tvctl.main(["--url", f"http://127.0.0.1:{port}", "--token", "t", "net-list"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith(f"tvctl: cannot reach http://127.0.0.1:{port}") and "Traceback" not in err
    assert tvctl.main(["--url", "nonsense://x", "net-list"]) == 1
    assert capsys.readouterr().err.startswith("tvctl: ")


def test_env_and_global_options_after_command(
    live: LiveServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TVCTL_URL", live.url)
    monkeypatch.setenv("TVCTL_TOKEN", ADMIN)
    assert tvctl.main(["tenant-add", "bob", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "bob"
    assert tvctl.main(["tenant-list"]) == 0
    assert "bob" in capsys.readouterr().out


def test_token_may_start_with_a_dash(live: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    """URL-safe tokens can begin with '-'; `--token -x...` must not read as a new option."""
    t = live.manager.create_tenant("dash")
    t.token = "-starts-with-a-dash"
    t.token_hash = token_hash(t.token)  # only the hash is kept
    assert tvctl.main(["--url", live.url, "--token", t.token, "net-list"]) == 0
    assert tvctl.main(["net-list", "--url", live.url, "--token", t.token]) == 0
    assert capsys.readouterr().err == ""


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert tvctl.main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("tenant-add", "net-add", "switch-add", "link-add", "host-del", "status"):
        assert cmd in out
    assert tvctl.main(["net-add", "--help"]) == 0
    assert "--controller" in capsys.readouterr().out
    assert tvctl.main(["net-set-scalability", "--help"]) == 0
    out = capsys.readouterr().out
    assert "exact, app, host, hop, lite" in out and "NET LEVEL" in out


def test_format_table_and_record() -> None:
    table = tvctl.format_table(["id", "name"], [[1, "a"], [22, None], [3, [1, 2]]])
    assert table.splitlines() == [
        "id  name",
        "--  ------",
        "1   a",
        "22",
        "3   [1, 2]",
    ]
    assert tvctl.format_record([("a", True), ("long", None)]).splitlines() == [
        "a    : true",
        "long :",
    ]


def test_big_switch_routes_and_paths(capsys: pytest.CaptureFixture[str]) -> None:
    """Big switch, routing, routes, manual and backup vlink paths on conftest's ring."""
    manager = NetworkManager(build_ring(), ADMIN)
    with LiveServer(manager) as live:
        cli = Cli(live, capsys)
        tok = cli.json(ADMIN, "tenant-add", "carol")["token"]
        n = str(cli.json(tok, "net-add")["id"])
        big = cli.ok(tok, "switch-add", n, "1", "0x2", "--routing", "manual", "--vdpid", "0xb")
        assert big.splitlines() == [
            "vdpid      : 00:00:00:00:00:00:00:0b",
            "dpid       : 00:00:00:00:00:00:00:01",
            "dpids      : [00:00:00:00:00:00:00:01, 00:00:00:00:00:00:00:02]",
            "routing    : manual",
            "backup_num : 0",
        ]
        cli.ok(tok, "switch-add", n, "3", "--vdpid", "0xc")
        for dpid, port in (("1", "1"), ("2", "1"), ("2", "3"), ("3", "2")):
            cli.ok(tok, "port-add", n, dpid, port)
        route = cli.json(
            tok, "route-add", n, "0xb", "1", "2", "1/2-2/2", "--priority", "9", "--both-ways"
        )
        assert (route["id"], route["priority"], route["live"]) == (1, 9, True)
        out = cli.ok(tok, "route-add", n, "0xb", "3", "1", "2/2-1/2", "--priority", "5")
        assert "path      : 00:00:00:00:00:00:00:02/2->00:00:00:00:00:00:00:01/2" in out

        lk = cli.ok(tok, "link-add", n, "0xb", "3", "0xc", "1", "--algorithm", "manual")
        assert "algorithm  : manual" in lk and "path       : (none)" in lk
        direct = "00:00:00:00:00:00:00:02/3-3/2"  # colon dpids work in paths too
        out = cli.ok(tok, "link-set-path", n, "1", direct, "--priority", "100")
        assert "path       : 00:00:00:00:00:00:00:02/3->00:00:00:00:00:00:00:03/2" in out
        around = "2/2-1/2,1/3-4/3,4/2-3/3"
        lk = cli.json(tok, "link-set-path", n, "1", around, "--priority", "50")
        assert [p["priority"] for p in lk["paths"]] == [100, 50] and len(lk["backup_paths"]) == 1

        shown = cli.ok(tok, "net-show", n).splitlines()
        at = shown.index("routes:")
        assert shown[at + 1].split() == ["vdpid", "id", "src", "dst", "priority", "live", "path"]
        assert [row.split()[1:5] for row in shown[at + 3 : at + 6]] == [
            ["1", "1", "2", "9"],
            ["2", "2", "1", "9"],
            ["3", "3", "1", "5"],
        ]
        at = shown.index("backup paths:")
        assert shown[at + 1].split() == ["link", "backup", "path"]
        assert shown[at + 3].split()[:2] == ["1", "1"]
        at = shown.index("manual paths:")
        assert [row.split()[:3] for row in shown[at + 3 : at + 5]] == [
            ["1", "100", "true"],
            ["1", "50", "true"],
        ]

        sw = cli.json(tok, "switch-set-routing", n, "0xb", "spf", "--backup-num", "1")
        assert (sw["routing"], sw["backup_num"], len(sw["routes"])) == ("spf", 1, 3)
        assert cli.ok(tok, "route-del", n, "0xb", "1", "--both-ways") == ""
        assert cli.ok(tok, "route-del", n, "0xb", "3") == ""
        assert manager.networks[int(n)].switches[0xB].routes == {}
        assert cli.ok(tok, "link-del-path", n, "1", "--priority", "100") == ""
        assert [p.priority for p in manager.networks[int(n)].links[1].paths] == [50]

        # refusals: one line, exit 1
        assert "OpenFlow 1.0" in cli.fails(tok, "switch-add", n, "4", "5")
        assert "invalid choice" in cli.fails(tok, "switch-set-routing", n, "0xb", "ospf")
        assert "out of range 0-8" in cli.fails(
            tok, "switch-set-routing", n, "0xb", "spf", "--backup-num", "9"
        )
        assert "--priority" in cli.fails(tok, "link-set-path", n, "1", "2/3-3/2")
        assert "bad hop" in cli.fails(tok, "link-set-path", n, "1", "2/3", "--priority", "1")
        err = cli.fails(tok, "link-del-path", n, "1", "--priority", "7")
        assert "no path with priority 7" in err
        assert "set its internal routing to manual" in cli.fails(
            tok, "route-add", n, "0xb", "1", "2", "1/2-2/2", "--priority", "1"
        )
        assert "has no route 9" in cli.fails(tok, "route-del", n, "0xb", "9")
        assert "invalid choice" in cli.fails(
            tok, "link-add", n, "0xb", "1", "0xc", "1", "--algorithm", "ecmp"
        )


def test_net_scalability(cli: Cli, manager: NetworkManager) -> None:
    """net-add --scalability and net-set-scalability NET LEVEL (Libera's reduction levels)."""
    tok = cli.json(ADMIN, "tenant-add", "alice")["token"]
    assert cli.json(tok, "net-add")["scalability"] == "exact"
    net = cli.json(tok, "net-add", "--scalability", "hop", "--controller", "ptcp:6655")
    n = str(net["id"])
    assert net["scalability"] == "hop" == manager.networks[net["id"]].scalability

    out = cli.ok(tok, "net-set-scalability", n, "lite")  # table: the network's record
    assert "scalability     : lite" in out.splitlines()
    assert out.splitlines()[0] == f"id              : {n}"
    assert manager.networks[net["id"]].scalability == "lite"
    reply = cli.json(tok, "net-set-scalability", n, "app")
    assert (reply["id"], reply["scalability"]) == (net["id"], "app")
    assert "scalability     : app" in cli.ok(tok, "net-show", n)
    assert cli.json(ADMIN, "net-set-scalability", n, "exact")["scalability"] == "exact"

    # refusals: one line, exit 1, nothing changed
    assert "invalid choice: 'fastest'" in cli.fails(tok, "net-set-scalability", n, "fastest")
    assert "invalid choice: 'HOP'" in cli.fails(tok, "net-set-scalability", n, "HOP")
    assert "invalid choice" in cli.fails(tok, "net-add", "--scalability", "all")
    assert "required" in cli.fails(tok, "net-set-scalability", n)
    assert "is not an integer" in cli.fails(tok, "net-set-scalability", "one", "hop")
    assert cli.fails(tok, "net-set-scalability", "99", "hop") == "no virtual network 99"
    bob = cli.json(ADMIN, "tenant-add", "bob")["token"]
    assert cli.fails(bob, "net-set-scalability", n, "hop") == f"no virtual network {n}"
    assert manager.networks[net["id"]].scalability == "exact"


def test_tvctl_levels_are_the_servers() -> None:
    assert tvctl.SCALABILITY_LEVELS == SCALABILITY_LEVELS


def test_host_move_is_the_admins_and_shows_the_location_to_the_admin_only(
    cli: Cli, manager: NetworkManager
) -> None:
    tok = cli.json(ADMIN, "tenant-add", "mover")["token"]
    n = str(cli.json(tok, "net-add", "--controller", "tcp:127.0.0.1:6653")["id"])
    s1 = cli.json(tok, "switch-add", n, "1")
    cli.ok(tok, "port-add", n, "1", "1")
    hid = str(cli.json(tok, "host-add", n, s1["vdpid_str"], "1", "02:00:00:00:00:07")["id"])
    assert "admin" in cli.fails(tok, "host-move", n, hid, "3", "2")
    out = cli.ok(ADMIN, "host-move", n, hid, "3", "2")
    assert "location : 00:00:00:00:00:00:00:03 port 2" in out
    mine = cli.json(tok, "net-show", n)["hosts"]
    assert mine[0]["location"] is None  # the tenant's view does not change
    assert cli.json(ADMIN, "net-show", n)["hosts"][0]["location"] == {"dpid": 3, "port": 2}
    assert "location : 00:00:00:00:00:00:00:03 port 2" in cli.ok(ADMIN, "host-show", n, hid)
    assert cli.json(tok, "host-show", n, hid)["location"] is None
    assert "faces another pswitch" in cli.fails(ADMIN, "host-move", n, hid, "1", "3")
    cli.ok(ADMIN, "host-move", n, hid, "1", "1")  # home again
    assert manager.networks[int(n)].hosts[int(hid)].location is None


def test_port_add_exclusive(cli: Cli, manager: NetworkManager) -> None:
    tok = cli.json(ADMIN, "tenant-add", "appliance")["token"]
    other = cli.json(ADMIN, "tenant-add", "neighbour")["token"]
    n = str(cli.json(tok, "net-add", "--controller", "tcp:127.0.0.1:6653")["id"])
    m = str(cli.json(other, "net-add", "--controller", "tcp:127.0.0.1:6653")["id"])
    cli.ok(tok, "switch-add", n, "1")
    cli.ok(other, "switch-add", m, "1")
    out = cli.ok(tok, "port-add", n, "1", "2", "--exclusive")
    assert "exclusive : true" in out.splitlines()
    table = cli.ok(tok, "net-show", n)
    header = next(
        line for line in table.splitlines() if line.startswith("vdpid") and "kind" in line
    )
    assert header.split()[-1] == "exclusive"
    assert cli.json(tok, "net-show", n)["switches"][0]["ports"][0]["exclusive"] is True
    assert "held exclusively" in cli.fails(other, "port-add", m, "1", "2")
    assert cli.json(other, "port-add", m, "1", "1")["exclusive"] is False
    assert "no other vport" in cli.fails(tok, "port-add", n, "1", "1", "--exclusive")


def test_net_limits_set_by_the_admin_and_read_by_the_tenant(
    cli: Cli, manager: NetworkManager
) -> None:
    """net-set-limits is the admin's (the tenant gets one line, exit 1); options not given
    leave the default; none given clears the override; net-limits shows both."""
    from tenantvisor.virtual.model import Limits

    manager.default_limits = Limits(vport_pps=2000)
    tok = cli.json(ADMIN, "tenant-add", "alice")["token"]
    n = str(cli.json(tok, "net-add")["id"])
    assert "admin" in cli.fails(tok, "net-set-limits", n, "--vlink-pps", "300")
    got = cli.json(ADMIN, "net-set-limits", n, "--vlink-pps", "300", "--vport-pps", "0")
    assert got["override"] == {"vport_pps": 0, "vlink_pps": 300}
    out = cli.ok(tok, "net-limits", n)
    assert "override  : vport_pps=0 vlink_pps=300" in out
    assert "defaults  : vport_pps=2000" in out and "effective : vlink_pps=300" in out
    assert "meters:" in out and "kind" in out
    assert "vport_pps and vport_kbps" in cli.fails(
        ADMIN, "net-set-limits", n, "--vport-pps", "1", "--vport-kbps", "1"
    )
    cli.ok(ADMIN, "net-set-limits", n)
    assert cli.json(tok, "net-limits", n)["override"] == {}


def test_show_limits_names_what_each_meter_limits() -> None:
    r = {
        "network": 3, "override": {}, "dropped": 7,
        "defaults": {"vport_pps": 0, "vport_kbps": 0, "vlink_pps": 300, "vlink_kbps": 0},
        "effective": {"vport_pps": 0, "vport_kbps": 0, "vlink_pps": 300, "vlink_kbps": 0},
        "meters": [
            {"kind": "vport", "vdpid": 0xA, "vport": 1, "rate": 300, "unit": "pps",
             "packets": 10, "dropped": 0, "dpid": None, "meter_id": None},
            {"kind": "vlink", "link_id": 2, "direction": "dst->src", "rate": 300, "unit": "pps",
             "packets": 20, "dropped": 7, "dpid": 1, "meter_id": 4},
        ],
    }  # fmt: skip
    out = tvctl.show_limits(r)
    assert "effective : vlink_pps=300" in out and "override  : (none)" in out
    lines = out.splitlines()
    assert any(ln.split()[:2] == ["vport", "00:00:00:00:00:00:00:0a/1"] for ln in lines)
    assert any("link 2 dst->src" in ln and ln.endswith("00:00:00:00:00:00:00:01#4")
               for ln in lines)  # fmt: skip
