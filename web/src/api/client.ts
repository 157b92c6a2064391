// The typed API client: openapi-fetch over the schema generated from Kai's OpenAPI document.
import createClient, { type Middleware } from "openapi-fetch";

import { csrfToken, isUnsafeMethod } from "./csrf";
import { ApiError, networkError, toApiError } from "./errors";
import type { paths } from "./schema";

type SessionListener = () => void;

const sessionEndedListeners = new Set<SessionListener>();

/** Calls `listener` whenever the server says the session is no longer valid. */
export function onSessionEnded(listener: SessionListener): () => void {
  sessionEndedListeners.add(listener);
  return () => sessionEndedListeners.delete(listener);
}

const sessionMiddleware: Middleware = {
  onRequest({ request }) {
    const token = csrfToken();
    if (token && isUnsafeMethod(request.method)) request.headers.set("X-CSRF-Token", token);
    return request;
  },
  onResponse({ request, response }) {
    const isAuthRoute = new URL(request.url).pathname.startsWith("/api/auth/");
    if (response.status === 401 && !isAuthRoute) sessionEndedListeners.forEach((fn) => fn());
    return response;
  },
};

/** The client every page uses; it sends the session cookie and the CSRF header. */
export const api = createClient<paths>({
  baseUrl: window.location.origin,
  credentials: "same-origin",
});
api.use(sessionMiddleware);

interface FetchResult<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

/** Awaits an openapi-fetch call and returns its data, or throws an ApiError with plain words. */
export async function unwrap<T>(call: Promise<FetchResult<T>>): Promise<T> {
  let result: FetchResult<T>;
  try {
    result = await call;
  } catch (error) {
    if (error instanceof ApiError) throw error;
    throw networkError();
  }
  const { data, error, response } = result;
  if (!response.ok || error !== undefined) throw toApiError(error, response.status);
  return data as T;
}
