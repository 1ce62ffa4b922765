"""Reading DVC experiments: evol-stop's choice of rounds and the paper's complexity-vs-quantity arms."""
