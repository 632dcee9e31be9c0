"""tenantvisor: per-tenant programmable virtual networks over a shared OpenFlow fabric."""

__version__ = "0.1.0"
