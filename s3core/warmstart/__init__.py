"""The warm start of the tiny searcher (issue 8): scripted search traces in the s3 tag protocol, written by
an oracle that knows which passages a question needs, for supervised fine-tuning before RL."""
