"""A small extractive reader used as a frozen generator (issue 8): it answers a chat by extracting a span
from the passages in its system message, so its accuracy depends on what the searcher put there."""
