"""Shared pytest configuration: hypothesis profiles.

``HYPOTHESIS_PROFILE`` selects one:

- ``ci`` (default): no deadline, a moderate number of examples, so the whole suite stays fast;
- ``dev``: many more examples and longer state-machine runs, for hunting bugs locally.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=40,
    stateful_step_count=40,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=1000,
    stateful_step_count=200,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
