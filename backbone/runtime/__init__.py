"""Service runtime shared by all four services: config, logging, errors, server, channels."""
