"""Training: the loop (clean epochs, then PGD or TRADES; resumable checkpoints) and its speed switches."""
