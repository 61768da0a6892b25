"""Evaluation: generator answers on each run's contexts, GenAcc / EM / F1, comparison tables and the report
(DESIGN.md section 2 "GenAcc", section 3 "Evaluation")."""
