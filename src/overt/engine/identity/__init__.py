"""Identity and access: sign-in (internal users, LDAP profiles, Kerberos), SSO tokens, and
oVirt's roles, permits and permissions (see docs/identity.md)."""
