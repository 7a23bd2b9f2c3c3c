"""The co-writing web app (see app.py)."""

from batplots.web.app import WebConfig, create_app  # noqa: F401
