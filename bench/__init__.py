"""Benchmarks on PostgreSQL at the scales the issues name; see README for the figures."""
