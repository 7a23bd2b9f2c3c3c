"""The `batplots` command line and the terminal co-writer."""
