"""Vocabulary: pure modules that every part may use (models, names, scopes, secrets, passwords, JSON shapes).

They import nothing of the gateway but each other and the config: no I/O, no aiohttp application.
"""
