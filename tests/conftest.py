"""For every test module: compiles that take the hosts-only way (compile/network.py, a live
migration's) are checked against the whole compile, in this process and in every daemon the
tests start (they inherit the environment)."""

import os

os.environ["TENANTVISOR_VERIFY_COMPILE"] = "1"
