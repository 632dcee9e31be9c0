"""A fuzzer for what tenants' controllers send a vswitch (issue 11).

Every input is one tenant connection's byte stream: framed by the real `Channel`, decoded
(OpenFlow 1.3, or 1.0 through `Of10Adapter`), handled by a real `VSwitchEndpoint` whose
pswitch sessions are real `PSwitchSession`s with their real drivers, on fake transports.
The only outcomes the project documents are an OpenFlow ERROR to the tenant or, for bytes
that cannot be framed or decoded, a closed connection; any other exception, a hang, output
that is not well-formed OpenFlow, a physical rule outside the tenant's network, or a request
left without a reply is a finding.

* `corpus`: seed inputs built with os-ken (what real controllers send), random structured
  messages, and mutations (bit flips, truncation, length lies, splices, field values);
* `harness`: one input through framing, decoding and handling, with the oracles;
* `run`: the drivers (a seeded mutation loop, and libFuzzer's coverage-guided one through
  atheris when it is installed), per-input time limits and memory tracking;
  `python -m tenantvisor.bench.fuzz` (`make fuzz`).
"""
