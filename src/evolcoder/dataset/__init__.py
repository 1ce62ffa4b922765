"""The training data: load and check the seed set, merge it with every round's survivors."""
