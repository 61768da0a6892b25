"""Models: resolving model names (``tiny:*`` or a Hugging Face folder), the tiny local models of the tiny
world and their stage, the encoder's pooling, and the content fingerprint of a model's weights."""
