/** Chooses the document-store adapter from configuration: MongoDB when a URL is given, else embedded. */
import { join } from "node:path";
import { EmbeddedDocumentStore } from "./embedded/embedded.adapter";
import { MongoDocumentStore } from "./mongodb.adapter";
import type { DocumentStore } from "./store.port";

export interface StoreConfig {
  /** The service that owns the store: its own MongoDB database or embedded file. */
  service: string;
  dataDir: string;
  mongoUrl?: string | undefined;
}

export function createDocumentStore(config: StoreConfig): DocumentStore {
  if (config.mongoUrl !== undefined) {
    return new MongoDocumentStore({ url: config.mongoUrl, database: `ordermesh_${config.service}` });
  }
  return new EmbeddedDocumentStore({ file: join(config.dataDir, `${config.service}.db`) });
}

export type * from "./store.port";
