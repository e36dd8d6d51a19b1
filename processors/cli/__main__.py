"""``python -m processors.cli``: the ``tokenledger`` command (for environments without the console script)."""

from processors.cli import main

if __name__ == "__main__":
    main()
