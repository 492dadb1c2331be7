"""The oVirt REST API v4-compatible API at /ovirt-engine/api (XML and JSON) and SSO."""
