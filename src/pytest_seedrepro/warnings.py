"""Warning classes users can filter, e.g. ``-W ignore::pytest_seedrepro.SeedReproFingerprintWarning``."""

from __future__ import annotations


class SeedReproWarning(UserWarning):
    """Something the plugin changed or noticed that the test author should know about.

    Raised, for example, when a marker overrides a value the call itself passed.
    """


class SeedReproFingerprintWarning(SeedReproWarning):
    """The provider's ``system_fingerprint`` changed and the output changed with it.

    Raised by the ``warn`` policy. A dedicated class so that ``-W error`` suites
    can still choose to ignore fingerprint changes alone.
    """
