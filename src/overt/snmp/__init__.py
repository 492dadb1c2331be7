"""SNMP pieces shared by the node and the engine: Overt's OID root, trap targets, and
sending a trap with net-snmp's `snmptrap`."""
