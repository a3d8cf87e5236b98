# A stand-in for a Debian server with the site installed, for
# tests/container/test_site_systemd.py: Debian's systemd as the container's
# PID 1 (podman run --systemd=always), pidone in /opt/pidone (from pidone's
# image, as `pip install pidone` would put it), and examples/site installed by
# its own install.sh, which enables pidone-site.service for the next boot.
# Built by tests/container/images.py, offline (the wheelhouse at /wheels).
ARG PIDONE_IMAGE
ARG SYSTEMD_BASE
FROM ${PIDONE_IMAGE} AS pidone

FROM ${SYSTEMD_BASE}
COPY --from=pidone /opt/pidone /opt/pidone
RUN ln -s /opt/pidone/bin/pidone /usr/local/bin/pidone && pidone --version
COPY examples/site/ /src/site/
# The deploy step's person: a login user in the deploy group, not the site's.
RUN /src/site/install.sh \
    && useradd --create-home --shell /bin/bash --groups deploy deployer \
    && systemctl is-enabled pidone-site.service
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
