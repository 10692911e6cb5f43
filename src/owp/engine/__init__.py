"""Wiring of models, data and evaluation: running proposal generators over datasets."""
