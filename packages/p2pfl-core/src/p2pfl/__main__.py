"""``python -m p2pfl`` runs the CLI."""

from p2pfl.cli import main

if __name__ == "__main__":
    main()
