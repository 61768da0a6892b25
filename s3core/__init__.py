"""s3core: the algorithm and I/O library of the s3 pipeline (Jiang et al., 2025, arXiv 2505.14146).

Usable on its own, without Prefect: `tasks/` and `flows/` wrap it. This package never imports prefect
(tests/test_layering.py enforces it).
"""

__version__ = "0.1.0"
