"""Shipped l3ic models (installed as the package data l3ic.models)."""
