#!/usr/bin/env node
// Records, in package-lock.json, the platform-specific optional packages that the registry did not
// serve when the lockfile was written (prebuilt binaries for other operating systems and CPUs).
// npm drops them from the lockfile, and `npm ci` then refuses the lockfile as out of sync. Each one
// is added with the `os`/`cpu` (and `libc`) read from its name, so npm skips it on other platforms
// without fetching anything. Run after changing dependencies: `npm run lock:complete`.
import { readFileSync, writeFileSync } from "node:fs";

const OS = [
  "android",
  "darwin",
  "freebsd",
  "linux",
  "openharmony",
  "win32",
  "netbsd",
  "openbsd",
  "sunos",
  "aix",
];
const CPU = {
  "arm-eabi": "arm",
  arm64: "arm64",
  arm: "arm",
  x64: "x64",
  ia32: "ia32",
  loong64: "loong64",
  ppc64: "ppc64",
  riscv64: "riscv64",
  s390x: "s390x",
};

function platformOf(name) {
  const tokens = name.split("/").pop().split("-");
  const os = tokens.find((t) => OS.includes(t));
  const cpuKey = Object.keys(CPU).find((k) => tokens.join("-").includes(`${os}-${k}`));
  if (os === undefined || cpuKey === undefined) return undefined;
  const libc = tokens.some((t) => t.startsWith("musl"))
    ? ["musl"]
    : os === "linux" && tokens.some((t) => t.startsWith("gnu"))
      ? ["glibc"]
      : undefined;
  return { os: [os], cpu: [CPU[cpuKey]], ...(libc ? { libc } : {}) };
}

const file = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(file, "utf8"));
const added = [];
const unknown = [];
for (const [path, entry] of Object.entries(lock.packages)) {
  for (const [dep, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const base = path === "" ? "" : `${path}/`;
    const candidates = [`${base}node_modules/${dep}`, `node_modules/${dep}`];
    if (candidates.some((c) => c in lock.packages)) continue;
    const platform = platformOf(dep);
    if (platform === undefined) {
      unknown.push(`${dep}@${version} (optional dependency of ${path || "the root"})`);
      continue;
    }
    lock.packages[`node_modules/${dep}`] = {
      version,
      ...platform,
      dev: entry.dev === true || undefined,
      optional: true,
    };
    added.push(`${dep}@${version} ${platform.os[0]}/${platform.cpu[0]}`);
  }
}
if (unknown.length > 0) {
  console.error(`complete-lockfile: cannot tell the platform of:\n  ${unknown.join("\n  ")}`);
  process.exit(1);
}
lock.packages = Object.fromEntries(
  Object.entries(lock.packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b))),
);
writeFileSync(file, JSON.stringify(lock, null, 2) + "\n");
console.log(
  added.length === 0
    ? "complete-lockfile: nothing missing"
    : `complete-lockfile: recorded ${added.length}:\n  ${added.join("\n  ")}`,
);
