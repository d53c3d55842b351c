# The faultline node: one static binary, nothing else (see `make images`).
FROM scratch
COPY faultline-node /faultline-node
ENTRYPOINT ["/faultline-node"]
CMD ["--help"]
