// Who is signed in: checked once at start, set by sign-in, cleared by sign-out or an expired cookie.
import { createContext, useCallback, useContext, useEffect, useMemo, useState } from "react";
import type { ReactNode } from "react";

import { api, onSessionEnded, unwrap } from "../api/client";
import { setCsrfToken } from "../api/csrf";
import type { User } from "../api/types";

interface SessionValue {
  user: User | null;
  checking: boolean;
  signIn: (username: string, password: string) => Promise<void>;
  signOut: () => Promise<void>;
}

const SessionContext = createContext<SessionValue | null>(null);

async function readCurrentUser(): Promise<User | null> {
  const { data, response } = await api.GET("/api/auth/me");
  if (!response.ok || !data) return null;
  if ("csrfToken" in data && typeof data.csrfToken === "string") setCsrfToken(data.csrfToken);
  return data.user;
}

/** Provides the session to the panel. */
export function SessionProvider({ children }: { children: ReactNode }) {
  const [user, setUser] = useState<User | null>(null);
  const [checking, setChecking] = useState(true);

  useEffect(() => {
    readCurrentUser()
      .then(setUser)
      .catch(() => setUser(null))
      .finally(() => setChecking(false));
    return onSessionEnded(() => {
      setCsrfToken(null);
      setUser(null);
    });
  }, []);

  const signIn = useCallback(async (username: string, password: string) => {
    const answer = await unwrap(api.POST("/api/auth/login", { body: { username, password } }));
    setCsrfToken(answer.csrfToken ?? null);
    setUser(answer.user);
  }, []);

  const signOut = useCallback(async () => {
    try {
      await api.POST("/api/auth/logout");
    } finally {
      setCsrfToken(null);
      setUser(null);
    }
  }, []);

  const value = useMemo(
    () => ({ user, checking, signIn, signOut }),
    [user, checking, signIn, signOut],
  );
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

/** The current session; only valid inside SessionProvider. */
export function useSession(): SessionValue {
  const value = useContext(SessionContext);
  if (!value) throw new Error("useSession needs a SessionProvider above it");
  return value;
}
