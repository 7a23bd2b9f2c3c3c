"""`python -m batplots.cli`: the command line (as the `batplots` script)."""

from batplots.cli.main import main

main()
