# Stand-in for the official node:24-bookworm-slim: Debian bookworm (minbase), the Node.js binary the
# project pins (the `node` npm package ships the official linux-x64 build), npm, and user node
# (1000:1000). The build context is prepared by build.sh.
FROM debian:bookworm-slim
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
# the CA bundle of the building machine: npm in a derived build trusts what this machine trusts
COPY ca-certificates.crt /usr/local/share/ca-certificates/build-host.crt
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && groupadd --gid 1000 node \
 && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \
 && node --version && npm --version
ENV NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/build-host.crt
CMD ["node"]
