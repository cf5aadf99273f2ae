"""What every test shares: hypothesis without its per-example deadline.

A deadline is a timing assertion, and timing belongs in the benchmarks: on a shared 2-core
machine under CI's load one example of a property test can take ten times its usual 200 ms,
which says nothing about the property. pytest's own timeout (120 s) still catches a hang.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("dukat", deadline=None)
settings.load_profile("dukat")
