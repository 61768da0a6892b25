"""Answer checks and rewards (DESIGN.md section 2, "GenAcc" and "Reward").

    span.py     span_check: the DPR has_answers rule (an empty-after-normalisation gold never matches)
    metrics.py  exact_match and token F1
    judge.py    the LLM judge: strict yes/no parsing, re-asks, failures surfaced (never scored 0)
    genacc.py   GenAcc = span_check OR judge_check; the Gain-Beyond-RAG reward kinds
"""
