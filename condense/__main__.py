"""``python -m condense`` is the same as the ``condense`` command."""

from condense.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
