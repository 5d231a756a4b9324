"""Running the gateway: start-up sync of config into the store, activity, the idle culler, lifecycle (reload,
database lock), metrics and logs.
"""
