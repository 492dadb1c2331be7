"""ovirt-imageio as Overt runs it, on the engine (proxy, local domains) and on nodes."""
