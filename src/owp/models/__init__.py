"""Proposal models. This issue ships the non-learned baselines; FCOS-OWP comes next."""
