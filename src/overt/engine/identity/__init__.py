"""Authentication: users, password hashes, SSO tokens (LDAP and Kerberos come later)."""
