"""Shipped l3ic models (installed as the package data runtime.models)."""
