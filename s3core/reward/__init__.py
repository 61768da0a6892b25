"""Answer checks and rewards (DESIGN.md section 2, "GenAcc" and "Reward").

    judge.py       the LLM judge: strict yes/no parsing, re-asks, failures surfaced (never scored 0)
    genacc.py      GenAcc = span_check OR judge_check; the Gain-Beyond-RAG reward kinds
    precompute.py  the naive-RAG answers every reward is measured against, and the training pool's filter
    stage.py       the naive_rag and training_pool stages

The answer matching itself (span_check, exact match, F1: pure text functions) is data/answers.py.
"""
