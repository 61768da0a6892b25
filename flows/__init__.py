"""Prefect flows: which stages run, in which order, with which config. Nothing else lives here."""

import tasks  # noqa: F401 - sets the project cache environment before prefect is imported
