"""How bytes move: HTTP/1 heads, strictness, the upstream client and its pool, tunnels, header rewriting,
forwarding, and the front-door lane.

Knows no store, no page and no REST route: it is handed a decision (a Route, an identity) and carries bytes.
"""
