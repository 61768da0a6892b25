"""The searcher: tag protocol, trajectory record, context assembly, rollouts and baseline strategies."""
