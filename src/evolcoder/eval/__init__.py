"""Evaluation: benchmarks, generation, post-processing, sandboxed execution, pass@k, evol-stop."""
