"""Reinforcement learning of the searcher: PPO / GRPO maths (core.py), the learner, the trainer, its
checkpoints (discovery, safe loading) and the train stage."""
