"""Authenticators: who may log in (``builtin``) and the failed-login throttle."""
