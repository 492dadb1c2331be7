"""The Overt node image: a live kernel + initramfs with libvirt, QEMU, Python and the
agent, built from this machine's installed Debian packages, booted by provisioning."""
