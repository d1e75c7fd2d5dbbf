"""The integrations tier: apps built on the libraries people use, tested through ``seeded_llm``.

Each module needs its library; without it the module is skipped with the
install command. The libraries pin different openai majors, so CI installs
each into a venv of its own (.ci/run) and sets ``SEEDREPRO_INTEGRATIONS`` to
the one it installed: that module must then run, never skip.
"""

from __future__ import annotations
