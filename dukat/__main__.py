"""`python -m dukat`: the command line, as the `dukat` console script runs it."""

from dukat.cli import main

if __name__ == "__main__":
    main()
