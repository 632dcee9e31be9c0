"""Prometheus metrics, read from the daemon's own counters when scraped.

Nothing is counted twice and the per-message path pays nothing: the channels, sessions and
endpoints already count what they do; this collector turns that into metric families with
`tenant`, `network`, `vdpid` and `dpid` labels (hex ids, as in the logs).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tenantvisor.quotas import KEYS, QUOTAS

if TYPE_CHECKING:
    from tenantvisor.hypervisor import Hypervisor


class HypervisorCollector(Collector):
    def __init__(self, hv: Hypervisor) -> None:
        self.hv = hv

    def collect(self) -> Iterator[Metric]:
        hv = self.hv
        p_labels = ["dpid"]
        up = GaugeMetricFamily("tenantvisor_pswitch_up", "pswitch connected", labels=p_labels)
        p_rx = CounterMetricFamily(
            "tenantvisor_pswitch_messages_received", "OpenFlow messages from the pswitch",
            labels=p_labels,
        )  # fmt: skip
        p_tx = CounterMetricFamily(
            "tenantvisor_pswitch_messages_sent", "OpenFlow messages to the pswitch",
            labels=p_labels,
        )  # fmt: skip
        p_fm = CounterMetricFamily(
            "tenantvisor_pswitch_flow_mods_sent", "FLOW_MODs sent to the pswitch", labels=p_labels
        )
        p_un = CounterMetricFamily(
            "tenantvisor_pswitch_unclaimed_messages",
            "PACKET_INs and FLOW_REMOVEDs from the pswitch that no vswitch claimed "
            "(a rule or network removed while they were on their way)",
            labels=["dpid", "type"],
        )
        for dpid, s in sorted(hv.sessions.items()):
            lab = [f"{dpid:016x}"]
            up.add_metric(lab, 1.0)
            p_rx.add_metric(lab, s.channel.rx_msgs)
            p_tx.add_metric(lab, s.channel.tx_msgs)
            p_fm.add_metric(lab, hv.flow_mods_total(dpid))
            for kind in ("packet_in", "flow_removed"):
                p_un.add_metric([*lab, kind], hv.unclaimed.get((dpid, kind), 0))
        yield from (up, p_rx, p_tx, p_fm, p_un)
        yield GaugeMetricFamily(
            "tenantvisor_physical_links", "link directions discovered by LLDP",
            value=len(hv.topo.links()),
        )  # fmt: skip

        v_labels = ["tenant", "network", "vdpid", "dpid"]
        ctl = GaugeMetricFamily(
            "tenantvisor_vswitch_controllers", "controllers connected", labels=v_labels
        )
        vr = GaugeMetricFamily(
            "tenantvisor_vswitch_virtual_rules", "rules in the tenant's tables", labels=v_labels
        )
        pr = GaugeMetricFamily(
            "tenantvisor_vswitch_physical_rules", "physical rules they became", labels=v_labels
        )
        rx = CounterMetricFamily(
            "tenantvisor_vswitch_messages_received", "OpenFlow messages from the tenant",
            labels=v_labels,
        )  # fmt: skip
        pin = CounterMetricFamily(
            "tenantvisor_vswitch_packet_ins", "PACKET_INs relayed to the tenant", labels=v_labels
        )
        for (net_id, vdpid), ep in sorted(hv.endpoints.items()):
            net = hv.manager.networks.get(net_id)
            tenant = hv.manager.tenants.get(net.tenant_id) if net is not None else None
            lab = [
                tenant.name if tenant else "",
                str(net_id),
                f"{vdpid:016x}",
                f"{ep.view.dpid:016x}",
            ]
            ctl.add_metric(lab, len(ep.conns))
            vr.add_metric(lab, len(ep.table))
            pr.add_metric(lab, len(ep.rules))
            rx.add_metric(lab, ep.rx_msgs + sum(c.channel.rx_msgs for c in ep.conns))
            pin.add_metric(lab, ep.packet_ins)
        yield from (ctl, vr, pr, rx, pin)

        # data-plane limits (issue 11): per network and kind (vport, vlink), from the limit
        # meters' statistics as last polled (tenantvisor.limits)
        l_labels = ["tenant", "network", "kind"]
        l_in = CounterMetricFamily(
            "tenantvisor_limit_packets",
            "packets that reached the network's data-plane limit meters", labels=l_labels,
        )  # fmt: skip
        l_drop = CounterMetricFamily(
            "tenantvisor_limit_dropped_packets",
            "packets the network's data-plane limits dropped (its traffic over its limits)",
            labels=l_labels,
        )
        l_n = GaugeMetricFamily(
            "tenantvisor_limit_meters", "data-plane limit meters in force", labels=l_labels
        )
        in_force: dict[tuple[int, str], int] = {}
        for net_id, st in hv.program.states.items():
            for m in st.meters.values():
                in_force[(net_id, m.kind)] = in_force.get((net_id, m.kind), 0) + 1
        for key in sorted(set(hv.limit_hits.totals) | set(in_force)):
            net_id, kind = key
            net = hv.manager.networks.get(net_id)
            tenant = hv.manager.tenants.get(net.tenant_id) if net is not None else None
            lab = [tenant.name if tenant else "", str(net_id), kind]
            packets, dropped = hv.limit_hits.totals.get(key, [0, 0])
            l_in.add_metric(lab, packets)
            l_drop.add_metric(lab, dropped)
            l_n.add_metric(lab, in_force.get(key, 0))
        yield from (l_in, l_drop, l_n)
        yield from _limit_metrics(hv)


def _limit_metrics(hv: Hypervisor) -> Iterator[Metric]:
    """What the tenants' limits did (quotas.py): messages that waited for their connection's
    tokens and the time waited, PACKET_INs dropped per vswitch (by the daemon's bucket, and
    by the pswitches' meters as last read), quota refusals, and each quota's use and limit."""
    v_labels = ["tenant", "network", "vdpid", "dpid"]
    delayed = CounterMetricFamily(
        "tenantvisor_vswitch_messages_delayed",
        "messages from the tenant's controllers handled after waiting for the connection's "
        "tokens (the rest of the connection waited in its socket: back-pressure)",
        labels=v_labels,
    )
    waited = CounterMetricFamily(
        "tenantvisor_vswitch_throttled_seconds",
        "seconds the vswitch's controller connections stopped reading for want of tokens",
        labels=v_labels,
    )
    dropped = CounterMetricFamily(
        "tenantvisor_vswitch_packet_ins_dropped",
        "PACKET_INs beyond the tenant's rate, dropped by the daemon (where=hypervisor) or by "
        "the vswitch's meter on its pswitches (where=pswitch, as last read)",
        labels=[*v_labels, "where"],
    )
    for (net_id, vdpid), ep in sorted(hv.endpoints.items()):
        b = ep.budget
        lab = [b.name if b else "", str(net_id), f"{vdpid:016x}", f"{ep.view.dpid:016x}"]
        c = ep.limit_counters()
        delayed.add_metric(lab, c["messages_delayed"])
        waited.add_metric(lab, c["throttled_seconds"])
        dropped.add_metric([*lab, "hypervisor"], c["packet_ins_dropped"])
        dropped.add_metric([*lab, "pswitch"], c["packet_ins_metered"])
    yield from (delayed, waited, dropped)

    refused = CounterMetricFamily(
        "tenantvisor_tenant_quota_refusals",
        "requests refused because the tenant held its quota (API: 403; OpenFlow: TABLE_FULL, "
        "OUT_OF_GROUPS, OUT_OF_METERS)",
        labels=["tenant", "quota"],
    )
    used = GaugeMetricFamily(
        "tenantvisor_tenant_quota_used",
        "what the tenant holds of a quota",
        labels=["tenant", "quota"],
    )
    limit = GaugeMetricFamily(
        "tenantvisor_tenant_limit", "the tenant's limit in force", labels=["tenant", "limit"]
    )
    m = hv.manager
    for tid, t in sorted(m.tenants.items()):
        lim = m.limits_of(tid)
        held: dict[str, int] = dict(m.usage(tid))
        counts = {q: n for (i, q), n in m.quota_refused.items() if i == tid}
        run = hv.tenant_usage(tid)
        held.update(run["used"])
        counts.update(run["refused"])
        for q in QUOTAS:
            refused.add_metric([t.name, q], counts.get(q, 0))
            used.add_metric([t.name, q], held.get(q, 0))
        for key in KEYS:
            limit.add_metric([t.name, key], lim.get(key))
    yield from (refused, used, limit)


def metrics_text(hv: Hypervisor) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HypervisorCollector(hv))
    return generate_latest(registry)
