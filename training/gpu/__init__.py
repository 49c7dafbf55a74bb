"""A short GPU window: its inputs packed on the CPU, then checks, training and evaluation."""
