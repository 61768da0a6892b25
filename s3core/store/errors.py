"""Errors of the artifact store; every message says which artifact and what to do."""


class ArtifactError(RuntimeError):
    """A corrupt, partial or mismatched artifact."""
