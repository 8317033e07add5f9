"""Thin ``headstart`` subcommands for the cloud: ``submit``, ``status``, ``results``."""
