"""Identity: who a credential is and what it may reach. ``caches.Authorizer`` turns a token or a login session into an
Identity (with the token, session and scope caches); ``shares`` grants access to one user's server to others.

No HTTP request here: the per-request middleware and ``requires_scope`` live in ``gateway.auth``; login cookies in
``gateway.pages.sessions``.
"""
