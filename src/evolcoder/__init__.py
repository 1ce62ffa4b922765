"""evolcoder: WizardCoder's Code Evol-Instruct recipe as a reproducible DVC pipeline."""

__version__ = "0.1.0"
