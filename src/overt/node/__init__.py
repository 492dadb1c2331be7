"""The node agent: runs VMs through a hypervisor driver and speaks `overt.protocol`."""
