"""What learns: the model and its training here; data, studies and the GPU window in folders."""
