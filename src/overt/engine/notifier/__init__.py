"""The engine's event notifications: subscriptions to oVirt's notifiable events, and the
notifier that turns new audit events into SNMP traps (docs/snmp.md)."""
