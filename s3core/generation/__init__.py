"""Generator backends: the frozen LLM that answers from a context, and the judge (DESIGN.md section 2)."""
