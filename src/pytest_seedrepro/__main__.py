"""``python -m pytest_seedrepro``: the ``seedrepro`` command (``review.main``)."""

from __future__ import annotations

from pytest_seedrepro.review import main

if __name__ == "__main__":  # importing the module (as tests/conftest.py does every module) runs nothing
    raise SystemExit(main())
