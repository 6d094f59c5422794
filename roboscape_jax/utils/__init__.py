"""Shared infrastructure: checkpoints, metrics, progress, PRNG plumbing, run provenance, train
loop, sharding."""
