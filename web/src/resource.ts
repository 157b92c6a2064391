// Loading data for a page: the value, the error in plain words, and a way to reload.
import { useCallback, useEffect, useRef, useState } from "react";

import { describeError } from "./api/errors";

export interface Resource<T> {
  data: T | null;
  error: string | null;
  loading: boolean;
  reload: () => void;
}

/**
 * Runs `load` when `deps` change and on `reload()`; with `refreshMs` it reloads
 * quietly on that interval while `keepRefreshing(data)` says so.
 */
export function useResource<T>(
  load: () => Promise<T>,
  deps: readonly unknown[],
  options: { refreshMs?: number; keepRefreshing?: (data: T) => boolean } = {},
): Resource<T> {
  const [data, setData] = useState<T | null>(null);
  // How many times `load` has answered: a loader may itself answer null (say, "no report
  // yet"), and the same null twice must still schedule the next refresh.
  const [answers, setAnswers] = useState(0);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [generation, setGeneration] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  const { refreshMs, keepRefreshing } = options;

  useEffect(() => {
    let active = true;
    setLoading(true);
    loadRef
      .current()
      .then((value) => {
        if (!active) return;
        setData(value);
        setAnswers((count) => count + 1);
        setError(null);
      })
      .catch((reason: unknown) => active && setError(describeError(reason)))
      .finally(() => active && setLoading(false));
    return () => {
      active = false;
    };
  }, [...deps, generation]);

  const shouldRefresh =
    answers > 0 && refreshMs !== undefined && (keepRefreshing?.(data as T) ?? true);
  useEffect(() => {
    if (!shouldRefresh) return;
    const timer = window.setTimeout(() => setGeneration((g) => g + 1), refreshMs);
    return () => window.clearTimeout(timer);
  }, [shouldRefresh, refreshMs, answers]);

  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  return { data, error, loading, reload };
}
