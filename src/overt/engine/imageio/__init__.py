"""The engine's image data server: the real ovirt-imageio daemon, fed tickets, over qemu-nbd.

oVirt's SDK and `ovirt_imageio.client` speak imageio's HTTP protocol to a transfer's
`transfer_url`; running the very daemon they were written against keeps every detail of
that protocol (ranges, zero, flush, extents, OPTIONS) theirs rather than ours.
"""
