"""Experiments: configs → runs on simulated chips → results (JSON, CSV, PNG)."""
