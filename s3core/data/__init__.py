"""Data formats and datasets: the tiny world generator (``tiny_world``) and readers of corpus and QA files."""
