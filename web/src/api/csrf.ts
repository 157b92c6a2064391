// The session's CSRF token: sent with every unsafe request that rides on the session cookie.

const STORAGE_KEY = "kai.csrfToken";

let current: string | null = readStored();

function readStored(): string | null {
  try {
    return window.sessionStorage.getItem(STORAGE_KEY);
  } catch {
    // Storage can be disabled by the browser; the token then lives in memory only.
    return null;
  }
}

/** Remembers the token from sign-in (or from /api/auth/me) for this tab. */
export function setCsrfToken(token: string | null): void {
  current = token;
  try {
    if (token) window.sessionStorage.setItem(STORAGE_KEY, token);
    else window.sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // See readStored: memory is enough for this tab.
  }
}

/** The token to send, if the session has one. */
export function csrfToken(): string | null {
  return current;
}

/** Whether a request with this method changes state and so needs the token. */
export function isUnsafeMethod(method: string): boolean {
  return !["GET", "HEAD", "OPTIONS"].includes(method.toUpperCase());
}
