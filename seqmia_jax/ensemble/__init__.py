"""Ensemble training of S shadow models: steps, sharding, checkpoints, the train stage."""
