"""
Hypothesis profiles for the property-based tests (tests/fuzz/).

"default": part of every plain `pytest` / `tox` run, a bounded run of a few
seconds in all, derandomised so a run that passes on one machine passes on
every other (the same examples each time). "fuzz": many random examples,
for `tox -e fuzz` (HYPOTHESIS_PROFILE=fuzz), the run that finds new bugs; a
failure found there is kept as an @example in the test that found it.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=25, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "20000")), deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
