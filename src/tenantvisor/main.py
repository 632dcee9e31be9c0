"""`tenantvisor` command line: serve, demo, bench."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from typing import Any

from tenantvisor import __version__
from tenantvisor.config import ConfigError, Settings, load, parse_limits_flag

log = logging.getLogger("tenantvisor")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def tune_gc() -> None:
    """Collect young objects less often and never rescan what start-up allocated.

    The daemon keeps tens of thousands of long-lived rule objects; with CPython's default
    threshold (700) the collector rescans them so often that it took 55% of the FLOW_MOD path
    (35 us -> 16 us per message with this setting, measured by `tenantvisor bench overhead`).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def open_store(settings: Settings) -> tuple[Any, Any, Any] | None:
    """(embedded server or None, connected Store, Snapshot), or None with `db: none`.
    StoreUnavailable/StoreError end the daemon: it must not serve without its intent."""
    if settings.db == "none":
        log.warning("no intent store (--db none): everything is forgotten on restart")
        return None
    from tenantvisor.store import EmbeddedServer, Store

    server = None
    remote = settings.db
    if remote is None:
        server = EmbeddedServer(settings.state_dir, adopt=True).start()
        remote = server.remote
        log.info("intent store: %s (embedded ovsdb-server on %s)", remote, server.db_path)
    else:
        log.info("intent store: %s", remote)
    store = Store(remote).start()
    snap = store.load()
    return server, store, snap


def store_command(action: str, directory: str, members: int, host: str) -> int:
    """`tenantvisor store cluster-start|stop|status DIR`: a Raft cluster of `members`
    ovsdb-servers (created on first start; ports kept in DIR/cluster.json).  Start prints
    the `--db` value every `tenantvisor serve` instance takes."""
    from tenantvisor.store import Cluster, StoreError

    if not 1 <= members <= 7:
        print(
            "tenantvisor store: --members must be 1-7 (Raft wants an odd number)", file=sys.stderr
        )
        return 2
    try:
        cluster = Cluster(directory, members, host=host)
        if action == "cluster-start":
            cluster.start()
            print(cluster.remote)
        elif action == "cluster-stop":
            cluster.stop()
        else:
            for m in cluster.members:
                state = "not running"
                if m.running:
                    lines = m.status().splitlines()
                    keep = ("Role:", "Term:", "Leader:")
                    state = ", ".join(ln.strip() for ln in lines if ln.startswith(keep))
                print(f"{m.directory.name} {m.remote} (raft {m.raft}): {state}")
    except (StoreError, OSError, ValueError) as exc:
        print(f"tenantvisor store: {exc}", file=sys.stderr)
        return 1
    return 0


def close_store(server: Any, store: Any) -> None:
    store.stop()
    if server is not None:
        server.stop()


async def serve(settings: Settings, ready: Any = None) -> None:
    """Run the hypervisor and its API in one event loop until cancelled or signalled."""
    import uvicorn

    from tenantvisor.api.app import create_app
    from tenantvisor.dedicated.manager import DnbManager, dnb_upkeep
    from tenantvisor.hypervisor import Hypervisor
    from tenantvisor.metrics import metrics_text

    hv = Hypervisor(
        settings.admin_token, lldp_interval=settings.lldp_interval,
        max_rules=settings.max_rules_per_vswitch, tenant_limits=settings.tenant_limits,
    )  # fmt: skip
    hv.manager.default_limits = settings.default_limits.limits
    if any(settings.default_limits.limits.given().values()):
        log.info("default data-plane limits: %s", ", ".join(
            f"{k}={v}" for k, v in settings.default_limits.limits.given().items() if v
        ))  # fmt: skip
    api_host, api_port = Settings.split(settings.api_listen, "api_listen")
    # intent and tenant state come back before any pswitch may connect: a pswitch synced
    # against an empty intent would lose every rule
    kept = await asyncio.to_thread(open_store, settings)
    dnb = DnbManager(
        lambda tid: t.name if (t := hv.manager.tenants.get(tid)) else str(tid),
        store=None if kept is None else kept[1],
    )
    persister = None
    agent = None
    if kept is not None:
        server, store, snap = kept
        from tenantvisor.persistence import StoreWriter, stored_tables

        if settings.instance is not None:  # one of several instances over this store
            from tenantvisor.cluster.agent import ClusterAgent

            agent = ClusterAgent(hv, store, settings.instance,
                                 f"http://{api_host}:{api_port}", settings.lease)  # fmt: skip
            agent.install(dnb)  # the DNB nodes too are managed by one instance
        hv.restore(snap.tenants, snap.networks, snap.counters, snap.allocations,
                   stored_tables(snap))  # fmt: skip
        hv.manager.store = StoreWriter(store)
        persister = hv.attach(store)  # its write_runtime takes a batch in one transaction
        persister.start()
        if agent is not None:
            await agent.start()
    await hv.start(settings.of_listen_address)
    if kept is not None and agent is None:  # reachable nodes reconciled now, others by upkeep
        await asyncio.to_thread(dnb.restore, kept[2].dnb)
    app = create_app(
        hv.manager,
        hv.status,
        lambda: metrics_text(hv),
        dnb=dnb,
        limits=hv.limit_report,
        usage=hv.tenant_usage,
        rolled_out=hv.program.idle,
    )
    upkeep = asyncio.ensure_future(dnb_upkeep(dnb))
    config = uvicorn.Config(app, host=api_host, port=api_port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    log.info("API on http://%s:%d (OpenAPI at /docs)", api_host, api_port)
    if ready is not None:
        ready(hv, server)
    tune_gc()
    # uvicorn catches SIGTERM/SIGINT while serving and raises them again when it is done: with
    # a handler of ours in place, that ends here instead of killing the process before the
    # store has the last changes and the embedded ovsdb-server is stopped
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: None)
    try:
        await server.serve()
    finally:
        upkeep.cancel()
        dnb.close()
        await hv.stop()
        if persister is not None:
            await persister.stop()
        if agent is not None:  # after the last write: the others take over from the store
            await agent.stop()
        if kept is not None:
            await asyncio.to_thread(close_store, *kept[:2])


def _tenant_limit_flags(text: str | None) -> dict[str, object] | None:
    """`--tenant-limits msg_rate=5000,vswitches=64` as a mapping (None: not given); a value
    that is not a whole number is kept as text, for the settings' check to name it."""
    if text is None:
        return None
    out: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"--tenant-limits {text!r}: expected NAME=N,... ({part!r})")
        v = value.strip()
        out[key.strip().replace("-", "_")] = int(v) if v.lstrip("-").isdigit() else v
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tenantvisor", description=__doc__)
    p.add_argument("--version", action="version", version=f"tenantvisor {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the hypervisor daemon")
    s.add_argument("--config", help="YAML file with the settings below")
    s.add_argument(
        "--of-listen", help="HOST:PORT or unix:PATH for pswitches (default 0.0.0.0:6633)"
    )
    s.add_argument("--api-listen", help="HOST:PORT for the API (default 127.0.0.1:8080)")
    s.add_argument("--admin-token", help="admin token (or TENANTVISOR_ADMIN_TOKEN)")
    s.add_argument("--lldp-interval", type=float, help="seconds between LLDP probes")
    s.add_argument("--log-level", help="debug, info, warning, error")
    s.add_argument(
        "--max-rules-per-vswitch", type=int,
        help="rules a tenant may hold in one vswitch (default 100000); more: TABLE_FULL",
    )  # fmt: skip
    s.add_argument(
        "--tenant-limits", metavar="NAME=N,...",
        help="every tenant's quotas and rates unless the admin sets its own, e.g. "
        "msg_rate=5000,vswitches=64: networks, vswitches, vports, vlinks, hosts, rules, "
        "groups, meters, msg_rate, msg_burst, packet_in_rate, packet_in_burst, "
        "packet_in_meter_rate, packet_in_meter_burst",
    )  # fmt: skip
    s.add_argument(
        "--state-dir",
        help="where the embedded intent store lives (default /var/lib/tenantvisor)",
    )
    s.add_argument(
        "--instance",
        help="this instance's name when several share one store (--db of a Raft cluster): "
        "networks are shared out among the instances and taken over when one dies",
    )
    s.add_argument(
        "--lease", type=float,
        help="several instances: seconds without a lease renewal before the others take an "
        "instance's networks (default 3)",
    )  # fmt: skip
    s.add_argument(
        "--default-limits",
        help="data-plane limits of every network unless the admin overrides them for it: "
        "vport_pps, vport_kbps, vlink_pps, vlink_kbps as NAME=N,... (one unit per kind, "
        "0: unlimited, the default)",
    )
    s.add_argument(
        "--db",
        help="OVSDB remotes of an existing store or Raft cluster (unix:PATH, tcp:IP:PORT, "
        "comma-separated) instead of the embedded one; 'none': keep nothing",
    )
    st = sub.add_parser(
        "store", help="the intent store: a Raft cluster of ovsdb-servers for several instances"
    )
    st.add_argument("action", choices=["cluster-start", "cluster-stop", "cluster-status"])
    st.add_argument("dir", help="the cluster's directory (member i in DIR/mI)")
    st.add_argument("--members", type=int, default=3, help="cluster size (default 3)")
    st.add_argument("--host", default="127.0.0.1", help="address members listen on")
    d = sub.add_parser("demo", help="two tenants over an emulated fabric, end to end")
    d.add_argument("--topology", default="fat-tree", choices=["fat-tree", "two-tier"])
    d.add_argument("--keep-logs", action="store_true")
    d.add_argument(
        "--scalability", default="exact", choices=["exact", "app", "host", "hop", "lite"],
        help="both tenants' flow-rule reduction level (default exact)",
    )  # fmt: skip
    b = sub.add_parser("bench", help="benchmarks (JSON with --json)")
    b.add_argument(
        "name",
        choices=[
            "overhead",
            "dnb",
            "failover",
            "reconnect",
            "restart",
            "reduction",
            "migration",
            "noisy-neighbour",
            "conformance",
        ],
    )
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("-n", "--flows", type=int, default=20000, help="FLOW_MODs per run")
    b.add_argument("--barriers", type=int, default=200, help="BARRIER round trips per run")
    b.add_argument("--repeat", type=int, default=3, help="alternating runs; medians kept")
    b.add_argument("--plot", help="write a PNG plot here")
    b.add_argument(
        "--quick", action="store_true",
        help="dnb, failover, reconnect, restart, reduction, migration, noisy-neighbour: a "
        "short run; conformance: the CI subset",
    )  # fmt: skip
    b.add_argument("--cuts", type=int, help="failover: link cuts per series (default 10)")
    b.add_argument("--hold", type=float, help="failover: seconds a link stays cut (default 2)")
    b.add_argument(
        "--remote", action="store_true", help="failover: also cut a link remote to the head-end"
    )
    b.add_argument("--iperf", action="store_true", help="failover: an iperf3 TCP stream too")
    b.add_argument("--flaps", type=int, help="reconnect: flaps per pswitch (default 10)")
    b.add_argument(
        "--down", type=float,
        help="reconnect: seconds a pswitch stays disconnected; restart: from the kill -9 to "
        "the new process (default 1)",
    )  # fmt: skip
    b.add_argument(
        "--interval", type=float,
        help="failover, reconnect, restart, noisy-neighbour: ping interval in seconds "
        "(default 0.01)",
    )  # fmt: skip
    b.add_argument(
        "--sizes",
        help="restart: intents as NETSxVSWITCHESxRULES,... (default 1x4x10,2x8x50,4x8x200,8x8x500)",
    )
    b.add_argument(
        "--fabric", choices=["fat-tree", "leaf-spine"], default="fat-tree",
        help="restart: k=4 fat tree (20 pswitches) or leaf-spine (2 spines x 8 leaves)",
    )  # fmt: skip
    b.add_argument(
        "--no-cluster", action="store_true",
        help="restart: skip the cluster part (3 instances over a Raft store, one killed, "
        "timed until the survivors have its vswitches)",
    )  # fmt: skip
    b.add_argument(
        "--role", choices=["both", "edge", "transit"], default="both",
        help="reconnect: flap the head-end pswitch, a transit one, or both",
    )  # fmt: skip
    b.add_argument(
        "--connections",
        help="reduction: TCP connections per tenant to measure at (default 2,10,50,100,150,200; "
        "6, the paper's Fig. 4 setting, is always measured)",
    )
    b.add_argument(
        "--verify", type=int, metavar="N",
        help="reduction: only the randomised equivalence check with N packets "
        "(tenantvisor.testbed.equivalence)",
    )  # fmt: skip
    b.add_argument(
        "--moves", type=int, help="migration: moves per level and mode (default 20, quick 5)"
    )
    b.add_argument(
        "--detect", action="store_true",
        help="migration: also moves the daemon detects (re-plug + gratuitous ARP, no API call)",
    )  # fmt: skip
    b.add_argument(
        "--rate",
        help="migration: the TCP stream's rate across the moves (default 10M); "
        "noisy-neighbour: the quiet tenant's TCP stream (default 10M)",
    )
    b.add_argument(
        "--seconds", type=float, help="noisy-neighbour: seconds measured per phase (default 20)"
    )
    b.add_argument(
        "--limits",
        help="noisy-neighbour: the daemon's --default-limits for the limited phase "
        "(default vport_pps=1000,vlink_pps=1000)",
    )
    b.add_argument(
        "--noise",
        help="noisy-neighbour: what the noisy tenant does, comma-separated: loop (a "
        "forwarding loop in its slice, the default), control (FLOW_MODs hammering its "
        "control channel)",
    )
    b.add_argument(
        "--no-store", action="store_true",
        help="migration: the daemon keeps no intent (--db none), to see the store's share",
    )  # fmt: skip
    b.add_argument(
        "--replug", action="store_true",
        help="migration: each move re-plugs the mover's cable in one OVSDB transaction, "
        "instead of switching between cables plugged in ahead",
    )  # fmt: skip
    b.add_argument(
        "--cases", metavar="REGEX",
        help="conformance: only the cases whose name matches (e.g. '^group/')",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.cmd == "serve":
        try:
            limits = None if args.default_limits is None else parse_limits_flag(args.default_limits)
            settings = load(
                args.config,
                {
                    "default_limits": limits,
                    "of_listen": args.of_listen,
                    "api_listen": args.api_listen,
                    "admin_token": args.admin_token,
                    "lldp_interval": args.lldp_interval,
                    "log_level": args.log_level,
                    "max_rules_per_vswitch": args.max_rules_per_vswitch,
                    "state_dir": args.state_dir,
                    "db": args.db,
                    "instance": args.instance,
                    "lease": args.lease,
                    "tenant_limits": _tenant_limit_flags(args.tenant_limits),
                },
            )
        except ConfigError as exc:
            print(f"tenantvisor: {exc}", file=sys.stderr)
            return 2
        setup_logging(settings.log_level)
        from tenantvisor.store import ServerError, StoreError

        try:
            asyncio.run(serve(settings))
        except (OSError, StoreError, ServerError) as exc:
            print(f"tenantvisor: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            pass
        return 0
    if args.cmd == "store":
        return store_command(args.action, args.dir, args.members, args.host)
    if args.cmd == "demo":
        from tenantvisor.demo import run_demo

        return run_demo(args.topology, keep_logs=args.keep_logs, scalability=args.scalability)
    if args.cmd == "bench" and os.geteuid() != 0:  # every bench builds namespaces and OVS
        print("tenantvisor bench: run as root (network namespaces, Open vSwitch)", file=sys.stderr)
        return 1
    if args.cmd == "bench" and args.name == "failover":
        from tenantvisor.bench.failover import run_failover

        return run_failover(
            cuts=args.cuts, quick=args.quick, remote=args.remote, iperf=args.iperf,
            as_json=args.json, plot_path=args.plot, hold=args.hold, interval=args.interval,
        )  # fmt: skip
    if args.cmd == "bench" and args.name == "reconnect":
        from tenantvisor.bench.reconnect import run_reconnect

        return run_reconnect(
            flaps=args.flaps, quick=args.quick, role=args.role, down=args.down,
            as_json=args.json, plot_path=args.plot, interval=args.interval,
        )  # fmt: skip
    if args.cmd == "bench" and args.name == "restart":
        from tenantvisor.bench.restart import run_restart

        return run_restart(
            quick=args.quick, sizes=args.sizes, fabric=args.fabric, down=args.down,
            as_json=args.json, plot_path=args.plot, interval=args.interval,
            cluster=not args.no_cluster,
        )  # fmt: skip
    if args.cmd == "bench" and args.name == "reduction":
        from tenantvisor.bench.reduction import run_reduction

        return run_reduction(
            quick=args.quick, connections=args.connections, as_json=args.json,
            plot_path=args.plot, verify=args.verify,
        )  # fmt: skip
    if args.cmd == "bench" and args.name == "migration":
        from tenantvisor.bench.migration import run_migration

        return run_migration(
            quick=args.quick, moves=args.moves, detect=args.detect, rate=args.rate,
            store=not args.no_store, replug=args.replug, as_json=args.json,
            plot_path=args.plot,
        )  # fmt: skip
    if args.cmd == "bench" and args.name == "noisy-neighbour":
        from tenantvisor.bench.noisy import run_noisy

        return run_noisy(
            quick=args.quick, seconds=args.seconds, limits=args.limits, rate=args.rate,
            noise=args.noise, interval=args.interval, as_json=args.json, plot_path=args.plot,
        )  # fmt: skip
    if args.cmd == "bench" and args.name == "conformance":
        from tenantvisor.bench.conformance import run_conformance

        return run_conformance(
            quick=args.quick, as_json=args.json, plot_path=args.plot, pattern=args.cases
        )
    if args.cmd == "bench" and args.name == "dnb":
        from tenantvisor.bench.dnb import run_dnb

        return run_dnb(quick=args.quick, as_json=args.json, plot_path=args.plot)
    if args.cmd == "bench":
        from tenantvisor.bench.overhead import run_overhead

        return run_overhead(
            args.flows, args.barriers, as_json=args.json, plot_path=args.plot, repeat=args.repeat
        )
    return 2


if __name__ == "__main__":
    sys.exit(main())
