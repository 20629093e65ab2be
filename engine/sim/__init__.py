"""Simulation (above exact, beside live): the trace-driven simulator, baseline policies, traces,
the locality cost model, run summaries, sweeps and analytics."""
