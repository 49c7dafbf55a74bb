"""Studies of trained models: the whole experiment, the frontier study and board probes."""
