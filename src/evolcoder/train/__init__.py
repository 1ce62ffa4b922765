"""Supervised fine-tuning on the merged data with the Alpaca prompt."""
