"""Hugging Face models shared by the in-process evolver, fine-tuning and evaluation."""
