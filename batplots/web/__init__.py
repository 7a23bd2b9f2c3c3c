"""The co-writing web app (see app.py)."""

from batplots.web.app import WebConfig, create_app, default_db_path  # noqa: F401
