// Portcullis for React (`portcullis/react`): a provider that loads the engine, a hook that
// decides a request, and a component that renders by a decision.
//
// A plain ES module (React.createElement, no JSX), so it runs as shipped. `react` is an optional
// peer dependency of the package: only this module imports it. The engine itself
// (`./portcullis.js` and its Wasm module) is imported when a provider first loads a bundle, so
// a bundler splits it off into its own chunk and the page downloads it only then.

import { createContext, createElement, Fragment, useContext, useEffect, useMemo, useState } from "react";

const PortcullisContext = createContext(null);

/** A non-Error thrown value as an Error (the hook's `error` is always an Error or null). */
function asError(thrown) {
  return thrown instanceof Error ? thrown : new Error(String(thrown));
}

/**
 * Provides an engine to the hooks and `<Can>` below it: `engine` (already loaded, never disposed
 * by the provider), or `bundle` (a compiled bundle, its JSON text, or a Promise of either),
 * loaded with `options` (`Portcullis.load`'s: `fetchKeys`, `now`, ...) and disposed when the
 * bundle changes or the provider unmounts. `options` are read when the bundle is loaded; a
 * bundle (by identity) is loaded once, so keep it in state or a memo. `token` is the signed-in
 * user's access token, the default of every request below (`null`: signed out).
 */
export function PortcullisProvider({ bundle, engine: given, options, token = null, children }) {
  const [loaded, setLoaded] = useState({ source: undefined, engine: null, error: null });
  useEffect(() => {
    if (given != null || bundle == null) return undefined;
    let live = true;
    let engine = null;
    (async () => {
      const { Portcullis } = await import("./portcullis.js");
      const loading = await Portcullis.load(await bundle, options);
      if (live) {
        engine = loading;
        setLoaded({ source: bundle, engine, error: null });
      } else {
        loading.dispose();
      }
    })().catch((error) => {
      if (live) setLoaded({ source: bundle, engine: null, error: asError(error) });
    });
    return () => {
      live = false;
      engine?.dispose();
    };
    // `options` are read at load time only (see above).
  }, [bundle, given]);

  let state;
  if (given != null) state = { engine: given, loading: false, error: null };
  else if (bundle == null) state = { engine: null, loading: false, error: new Error("PortcullisProvider: give it a `bundle` or an `engine`") };
  // The engine of a previous bundle is never handed out, not even for the render before its
  // effect's clean-up disposes it.
  else if (loaded.source !== bundle) state = { engine: null, loading: true, error: null };
  else state = { engine: loaded.engine, loading: false, error: loaded.error };
  const value = useMemo(() => ({ ...state, token }), [state.engine, state.loading, state.error, token]);
  return createElement(PortcullisContext.Provider, { value }, children);
}

/** The provider's state: `{engine, loading, error, token}` (`engine` is null until loaded). */
export function usePortcullis() {
  const value = useContext(PortcullisContext);
  if (value === null) throw new Error("usePortcullis, usePermission and <Can> need a <PortcullisProvider> above them");
  return value;
}

/**
 * An identity for a request: equal for requests that decide alike. Strings and BigInts are
 * tagged, so that neither can pass for the other.
 */
function requestKey(request) {
  return JSON.stringify(request, (_key, value) => {
    if (typeof value === "string") return `s${value}`;
    if (typeof value === "bigint") return `b${value}`;
    return value;
  });
}

/** Verifications under way, per engine and token: hooks asking about one token share one. */
const verifying = new WeakMap();

/** Verify `token` (and so cache it) once, however many hooks ask at the same time. */
function verifyOnce(engine, token) {
  let inflight = verifying.get(engine);
  if (inflight === undefined) verifying.set(engine, (inflight = new Map()));
  let done = inflight.get(token);
  if (done === undefined) {
    // A token that is refused is decided (unauthenticated) by `decide` below.
    done = engine.authenticate(token).then(() => {}, () => {});
    inflight.set(token, done);
    done.then(() => inflight.delete(token));
  }
  return done;
}

/** Decide what `decideSync` could not: the token verified once for every hook, then decided. */
async function decideLater(engine, request) {
  if (typeof request?.token === "string") {
    await verifyOnce(engine, request.token);
    const decision = engine.decideSync(request);
    if (decision !== null) return decision;
  }
  return engine.decide(request);
}

/**
 * Decide `request` (`{action, resource, context?, token?}`; an undefined token is the
 * provider's, `null` is none). Returns `{allowed, decision, loading, error}`: `allowed` only for an `allow`
 * decision (false while loading, and on any error: fail-closed). A token the engine has
 * already verified is decided during the render (`decideSync`), with no loading state; otherwise
 * after it, once the token is verified (once for all the hooks that ask about it). A request is
 * decided once per engine: another token, resource or context is another request.
 */
export function usePermission(request) {
  const { engine, loading: engineLoading, error: engineError, token } = usePortcullis();
  const full = request != null && typeof request === "object" && request.token === undefined ? { ...request, token } : request;
  const key = requestKey(full);

  const now = useMemo(() => {
    if (engine === null) return null;
    try {
      const decision = engine.decideSync(full);
      return decision === null ? null : { engine, key, decision, error: null };
    } catch (error) {
      return { engine, key, decision: null, error: asError(error) };
    }
  }, [engine, key]);

  const [later, setLater] = useState(null);
  useEffect(() => {
    if (engine === null || now !== null) return undefined;
    let live = true;
    decideLater(engine, full).then(
      (decision) => live && setLater({ engine, key, decision, error: null }),
      (error) => live && setLater({ engine, key, decision: null, error: asError(error) }),
    );
    return () => {
      live = false;
    };
  }, [engine, key, now]);

  const result = now ?? (later !== null && later.engine === engine && later.key === key ? later : null);
  if (result === null) {
    const error = engine === null ? engineError : null;
    return { allowed: false, decision: null, loading: error === null && (engine !== null || engineLoading), error };
  }
  return { allowed: result.decision?.decision === "allow", decision: result.decision, loading: false, error: result.error };
}

/**
 * Renders `children` when `action` on `resource` (with `context`, and `token` or the
 * provider's) is allowed, `fallback` when it is not (deny, unauthenticated, or any error), and
 * `loading` while it is being decided.
 */
export function Can({ action, resource, context, token, children = null, fallback = null, loading = null }) {
  const request = { action, resource };
  if (context !== undefined) request.context = context;
  if (token !== undefined) request.token = token;
  const permission = usePermission(request);
  const shown = permission.allowed ? children : permission.loading ? loading : fallback;
  return createElement(Fragment, null, shown);
}
