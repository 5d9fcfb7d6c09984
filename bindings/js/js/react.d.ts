// Type declarations for `portcullis/react`. React's own types come from `@types/react`.

import type { ReactElement, ReactNode } from "react";
import type { CedarRecord, CompiledBundle, Decision, DecisionRequest, LoadOptions, Portcullis, ResourceRef } from "./portcullis.js";

/** Props of `<PortcullisProvider>`: an `engine`, or a `bundle` to load. */
export interface PortcullisProviderProps {
  /**
   * A compiled bundle (object or JSON text), or a Promise of one, loaded with `options`. Loaded
   * once per bundle (by identity: keep it in state or a memo); the engine is disposed when the
   * bundle changes or the provider unmounts.
   */
  bundle?: CompiledBundle | string | Promise<CompiledBundle | string>;
  /** An engine loaded by the application (`bundle` and `options` are then not used); never disposed by the provider. */
  engine?: Portcullis;
  /** Options of `Portcullis.load` (`fetchKeys`, `now`, ...), read when the bundle is loaded. */
  options?: LoadOptions;
  /** The signed-in user's access token: the default of every request below. `null`: signed out. */
  token?: string | null;
  children?: ReactNode;
}

/** Loads a bundle (or takes an engine) for the hooks and `<Can>` below it. */
export function PortcullisProvider(props: PortcullisProviderProps): ReactElement;

/** The provider's state. */
export interface PortcullisState {
  /** The engine, once loaded. */
  engine: Portcullis | null;
  /** The bundle is being loaded. */
  loading: boolean;
  /** Why the bundle did not load (`BundleError`, `KeyError`, ...). */
  error: Error | null;
  /** The provider's token. */
  token: string | null;
}

/** The provider's state; throws outside a `<PortcullisProvider>`. */
export function usePortcullis(): PortcullisState;

/** What `usePermission` answers. */
export interface Permission {
  /** True only for an `allow` decision: false while loading and on any error. */
  allowed: boolean;
  /** The decision, once made. */
  decision: Decision | null;
  /** The bundle is loading or the request is being decided. */
  loading: boolean;
  /** Why no decision could be made: the bundle did not load, or the request is malformed (`RequestError`). */
  error: Error | null;
}

/**
 * Decide a request. `token` undefined: the provider's; `null`: none. Decided during the render
 * when the engine already verified the token (`decideSync`), otherwise after it.
 */
export function usePermission(request: DecisionRequest): Permission;

/** Props of `<Can>`. */
export interface CanProps {
  /** Action id (`view`). */
  action: string;
  resource: ResourceRef;
  context?: CedarRecord;
  /** The token (default: the provider's; `null`: none). */
  token?: string | null;
  /** Rendered when the action is allowed. */
  children?: ReactNode;
  /** Rendered when it is not: deny, unauthenticated, or an error. */
  fallback?: ReactNode;
  /** Rendered while it is being decided (default: nothing). */
  loading?: ReactNode;
}

/** Renders `children` when the action is allowed, else `fallback` (`loading` meanwhile). */
export function Can(props: CanProps): ReactElement;
