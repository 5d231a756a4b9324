"""The store's tables, queries and migrations; ``gateway.store.Store`` is the one face of them.

Only ``gateway.store`` imports these modules. No HTTP here.
"""
