"""Sampling: flow-matching schedules, ODE solvers as pure functions, guidance wrappers."""
