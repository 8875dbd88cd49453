"""`python -m dlx`: the same entry point as the `dlx` script."""

from dlx.cli import main

main()
