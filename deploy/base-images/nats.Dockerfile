# Stand-in for the official nats:2.10-alpine: Debian's nats-server behind the same entrypoint
# contract (arguments that start with "-" go to nats-server) and busybox wget for healthchecks.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nats-server busybox \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && ln -s /bin/busybox /usr/local/bin/wget
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV ENTRYPOINT_SERVER=nats-server
EXPOSE 4222 6222 8222
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["nats-server"]
