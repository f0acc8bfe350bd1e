/** @type {import('jest').Config} */
const transform = { "^.+\\.ts$": ["ts-jest", { tsconfig: "tsconfig.json" }] };
const common = { testEnvironment: "node", transform, moduleFileExtensions: ["ts", "js", "json"] };

module.exports = {
  // Integration suites start real servers; two cores are shared by them.
  maxWorkers: 2,
  reporters: ["default", "<rootDir>/test/support/summary.reporter.js"],
  testTimeout: 30000,
  projects: [
    { ...common, displayName: "unit", testMatch: ["<rootDir>/test/unit/**/*.spec.ts"] },
    {
      ...common,
      displayName: "integration",
      testMatch: [
        "<rootDir>/test/conformance/**/*.spec.ts",
        "<rootDir>/test/integration/**/*.spec.ts",
        "<rootDir>/test/fault/**/*.spec.ts",
      ],
    },
    { ...common, displayName: "e2e", testMatch: ["<rootDir>/test/e2e/**/*.spec.ts"] },
    // the deployment: Kubernetes manifests (offline policy check) and the container image run for real
    { ...common, displayName: "deploy", testMatch: ["<rootDir>/test/deploy/**/*.spec.ts"] },
  ],
};
