"""The web admin portal: server-rendered pages, live updates, graphs and the VM console."""
