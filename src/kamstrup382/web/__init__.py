"""The web dashboard and its JSON API over the storage (read only)."""

from kamstrup382.web.app import DEFAULT_TITLE, create_app

__all__ = ["DEFAULT_TITLE", "create_app"]
