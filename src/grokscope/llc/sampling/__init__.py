"""The sampling layer: the batched loop over chains (loop.py), kernels (how a state moves),
observers (what is recorded), the objective, the noise streams, parameter trees, which weights are
sampled, and the thread groups. It knows nothing of diagnostics, tuning or runs."""
