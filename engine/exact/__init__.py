"""Exact placement (above place): the tree DP, the lexicographic bounds, CP-SAT, the ``auto``
policy and the public ``place``/``solve``, batch and preemption planning."""
