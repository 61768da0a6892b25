"""Data: corpus and QA formats and their ingest, the tiny world generator (``tiny_world``), matching answers
against gold answers (``answers``), sampling evaluation questions, and the data stages (``stage``)."""
