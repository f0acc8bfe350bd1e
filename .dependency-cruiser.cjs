/** Architecture rules checked by `npm run deps:validate`. */
module.exports = {
  forbidden: [
    {
      name: "models-stay-pure",
      comment:
        "models/ holds the domain: it never imports infrastructure (moleculer, mongodb, nats, ioredis, node:sqlite) nor other layers.",
      severity: "error",
      from: { path: "^models/" },
      to: {
        path: "(^node_modules/(moleculer|moleculer-[a-z]+|mongodb|nats|ioredis|opossum|mingo)/)|^(lib|services|mixins|bin)/|^node:sqlite$|^sqlite$",
      },
    },
    {
      name: "lib-below-services",
      comment: "lib/ holds adapters and plumbing; it must not depend on services or mixins.",
      severity: "error",
      from: { path: "^lib/" },
      to: { path: "^(services|mixins|bin)/" },
    },
    {
      name: "no-circular",
      severity: "error",
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    exclude: { path: "^(dist|test|bench)/" },
  },
};
