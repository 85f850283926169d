"""Test-wide settings."""

import os

# The planner's probes read the host's warm pool by touching up to 4 GiB of fresh pages (probe.warm_pool); the
# tests' tiny models need none of it, so each reading touches at most 256 MiB here.
os.environ.setdefault("HARNESS_PLAN_POOL_CAP_MIB", "256")
