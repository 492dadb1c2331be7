"""Storage on the node: local disk images (qemu-img); storage domains come later."""
