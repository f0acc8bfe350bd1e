# Stand-in for the official redis:7-alpine: Debian's redis-server and redis-cli behind the same
# entrypoint contract (arguments that start with "-" go to redis-server; root drops to user redis
# after taking ownership of /data).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV ENTRYPOINT_SERVER=redis-server ENTRYPOINT_USER=redis
VOLUME /data
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
