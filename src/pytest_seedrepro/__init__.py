"""pytest-seedrepro: reproducible, recorded and snapshotted tests of OpenAI-calling code.

Importing this package is cheap on purpose: it must not import openai, vcrpy or
syrupy, because pytest imports it for every run of every project that has the
plugin installed.
"""

from __future__ import annotations

from pytest_seedrepro.calls import Call
from pytest_seedrepro.warnings import SeedReproFingerprintWarning, SeedReproWarning

__all__ = ["Call", "SeedReproFingerprintWarning", "SeedReproWarning", "__version__"]

__version__ = "0.1.0"
