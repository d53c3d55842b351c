# The faultline controller and packet proxy: one static binary (`make images`),
# with the node binary beside it for the scheduled runs, which start their
# clusters as local processes inside this container.
FROM scratch
COPY faultline-chaos /faultline-chaos
COPY faultline-node /faultline-node
ENTRYPOINT ["/faultline-chaos"]
CMD ["--help"]
