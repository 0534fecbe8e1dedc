"""The gateway: the public API of Backbone (authentication, validation, routing, fan-out)."""
