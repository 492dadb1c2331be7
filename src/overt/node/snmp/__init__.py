"""SNMP monitoring of a node: its state over snmpd's pass_persist, traps on VM changes."""
