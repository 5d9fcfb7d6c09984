// Node only (tsconfig.node.json): node:crypto as @types/node types it fits the SDK's interface.
import * as nodeCrypto from "node:crypto";
import { Portcullis, type NodeCryptoLike } from "portcullis";

export const fromNode: NodeCryptoLike = nodeCrypto;

export async function loadWithNodeCrypto(bundleJson: string): Promise<Portcullis> {
  return Portcullis.load(bundleJson, { nodeCrypto, subtle: undefined });
}

export async function loadWithoutNodeCrypto(bundleJson: string): Promise<Portcullis> {
  return Portcullis.load(bundleJson, { nodeCrypto: null });
}
