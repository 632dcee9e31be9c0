"""`python -m tenantvisor.bench.fuzz`: see tenantvisor.bench.fuzz.run."""

import sys

from tenantvisor.bench.fuzz.run import main

sys.exit(main())
