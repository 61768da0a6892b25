"""Generator backends: the frozen LLM that answers from a context, and the judge (DESIGN.md section 2), over
HTTP (OpenAI-compatible, Anthropic), in process (transformers), or the tiny world's extractive reader."""
