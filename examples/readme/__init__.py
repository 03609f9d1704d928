"""The README's code blocks, each inside enough context to type-check on its own.

Each block sits between ``# README {`` and ``# README }``;
``tests/unit/test_readme_examples.py`` checks that README.md holds exactly these
blocks, and ``.ci/run`` checks them with ``mypy --strict``. Nothing here is run.
"""
