"""The engine's network services: DHCP and DNS (dnsmasq) per managed network, NTP (chrony)."""
