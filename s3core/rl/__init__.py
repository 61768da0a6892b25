"""Reinforcement learning of the searcher: PPO / GRPO maths (core.py) and the trainer."""
