/**
 * Projections (checked by `assertSupportedProjection`): all-inclusion or all-exclusion of dotted paths,
 * `_id` kept unless excluded. A path through an array applies to each embedded document in it; for an
 * inclusion, array elements that are not documents are dropped, as in MongoDB.
 */
import { isPlainObject } from "../query-subset";
import type { Doc, Projection } from "../store.port";
import { cloneValue } from "./values";

type Tree = Map<string, Tree | true>;

function buildTree(paths: string[]): Tree {
  const root: Tree = new Map();
  for (const path of paths) {
    const parts = path.split(".");
    let node = root;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] as string;
      if (i === parts.length - 1) {
        node.set(part, true);
      } else {
        let child = node.get(part);
        if (child === undefined || child === true) {
          child = new Map();
          node.set(part, child);
        }
        node = child;
      }
    }
  }
  return root;
}

function include(value: unknown, tree: Tree): unknown {
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    for (const element of value) {
      if (isPlainObject(element) || Array.isArray(element)) out.push(include(element, tree));
    }
    return out;
  }
  if (!isPlainObject(value)) return undefined;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    const node = tree.get(key);
    const field = value[key];
    if (node === undefined || field === undefined) continue;
    if (node === true) {
      out[key] = cloneValue(field);
    } else {
      const sub = include(field, node);
      if (sub !== undefined) out[key] = sub;
    }
  }
  return out;
}

function exclude(value: unknown, tree: Tree): unknown {
  if (Array.isArray(value)) return value.map((element) => exclude(element, tree));
  if (!isPlainObject(value)) return cloneValue(value);
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    const node = tree.get(key);
    const field = value[key];
    if (node === true || field === undefined) continue;
    out[key] = node === undefined ? cloneValue(field) : exclude(field, node);
  }
  return out;
}

/** 1 or true (true is accepted as MongoDB does). */
function isInclusion(flag: unknown): boolean {
  return flag === 1 || flag === true;
}

/** Compiles a projection into a function returning a projected copy of a document. */
export function compileProjection(projection: Projection | undefined): (doc: Doc) => Doc {
  const entries = Object.entries(projection ?? {});
  const idFlag = entries.find(([path]) => path === "_id")?.[1];
  const others = entries.filter(([path]) => path !== "_id");
  const keepId = idFlag === undefined || isInclusion(idFlag);
  if (others.length === 0) {
    if (idFlag === undefined) return (doc) => cloneValue(doc);
    if (keepId) return (doc) => ({ _id: doc._id });
    const idOnly = buildTree(["_id"]);
    return (doc) => exclude(doc, idOnly) as Doc;
  }
  const inclusive = others.some(([, flag]) => isInclusion(flag));
  if (inclusive) {
    const tree = buildTree(others.map(([path]) => path));
    if (keepId) tree.set("_id", true);
    return (doc) => include(doc, tree) as Doc;
  }
  const tree = buildTree(others.map(([path]) => path));
  if (!keepId) tree.set("_id", true);
  return (doc) => exclude(doc, tree) as Doc;
}
