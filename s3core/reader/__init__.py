"""The tiny world's reader (issue 8): training a small extractive reader used as the frozen generator, and
its stage. The reader model itself (it answers a chat by extracting a span from the passages in its system
message, so its accuracy depends on what the searcher put there) is generation/extractive_reader.py, with
the generator backends that run it."""
