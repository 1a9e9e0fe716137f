"""`python -m slimbert` (and `accelerate launch -m slimbert`) run the CLI."""

from slimbert.cli import main

if __name__ == "__main__":
    main()
