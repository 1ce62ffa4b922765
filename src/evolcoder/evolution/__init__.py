"""Code Evol-Instruct: plan the rounds, run one round (evolve, answer, eliminate), write its outputs."""
