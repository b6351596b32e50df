"""The Hypothesis settings of DroneCop's property tests, chosen by ``HYPOTHESIS_PROFILE``.

``quick`` (the default) keeps ``make test`` to seconds; ``fuzz`` runs each property on
20,000 examples for a longer hunt (minutes), and is what ``fuzz/run.py`` falls back to
when atheris is missing. Tests opt in with ``@PROFILE`` rather than by loading a profile
globally, so the other test modules keep their own settings.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("quick", max_examples=60, deadline=None, suppress_health_check=_SLOW_IS_FINE)
settings.register_profile("fuzz", max_examples=20_000, deadline=None, suppress_health_check=_SLOW_IS_FINE)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE") or "quick")
