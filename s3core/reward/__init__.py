"""Rewards and answer checks: span_check (DPR has_answers), and later judge_check, GenAcc and GBR.

DESIGN.md section 2 ("GenAcc", "Reward").
"""
