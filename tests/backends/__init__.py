"""Programs the tests run as processes: the fake single-user server, the echo backend, managed services."""
