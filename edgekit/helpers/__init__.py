"""Helpers that are not the product: quiet runtimes, Ctrl-C, a child's JSON answer, telemetry
off, the config and cache folders, statistics, tables and plots, text, files written aside,
argument limits. Nothing here knows what a model, a bundle or a task is.
"""
