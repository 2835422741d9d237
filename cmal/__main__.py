"""``python -m cmal``: the same as the ``cmal`` command."""

from cmal.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
