#!/bin/sh
# The official images' entrypoint contract: leading options are the server's, and a server started
# as root owns its data directory and runs as ENTRYPOINT_USER (when set).
set -e
case "$1" in -*) set -- "$ENTRYPOINT_SERVER" "$@" ;; esac
# the official redis image is built with protected mode off: in a container the server listens on
# the container network, and access is the network's business (its default would refuse every peer)
if [ "$1" = redis-server ]; then
  case " $* " in *" --protected-mode "*) ;; *) set -- "$@" --protected-mode no ;; esac
fi
if [ "$1" = "$ENTRYPOINT_SERVER" ] && [ -n "${ENTRYPOINT_USER:-}" ] && [ "$(id -u)" = 0 ]; then
  chown -R "$ENTRYPOINT_USER" /data 2>/dev/null || true
  exec setpriv --reuid="$ENTRYPOINT_USER" --regid="$ENTRYPOINT_USER" --init-groups "$@"
fi
exec "$@"
