# Prometheus from Debian's package: its binary, the C library and the loader
# it links (copied by scripts/images.sh), so the stack needs no registry.
FROM scratch
COPY rootfs/ /
ENTRYPOINT ["/usr/bin/prometheus"]
