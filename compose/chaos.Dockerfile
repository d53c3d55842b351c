# The faultline controller and packet proxy: one static binary (`make images`).
FROM scratch
COPY faultline-chaos /faultline-chaos
ENTRYPOINT ["/faultline-chaos"]
CMD ["--help"]
