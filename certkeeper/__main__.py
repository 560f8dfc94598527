"""``python -m certkeeper`` runs the command line."""

from certkeeper.cli import main

if __name__ == "__main__":
    main()
