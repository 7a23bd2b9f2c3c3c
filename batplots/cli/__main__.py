"""`python -m batplots.cli.main`: the command line."""

from batplots.cli.main.main import main

main()
