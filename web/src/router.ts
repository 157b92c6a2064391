// A small hash router: the panel's pages live after `#`, so any static server can host it.
import { useEffect, useState } from "react";

export type Route =
  | { page: "datasets" }
  | { page: "catalog" }
  | { page: "dataset"; datasetId: number }
  | { page: "models" }
  | { page: "model"; modelId: number }
  | { page: "jobs" }
  | { page: "job"; jobId: number }
  | { page: "not-found"; path: string };

/** Reads a route from a hash such as `#/datasets/3`. */
export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, "") || "/";
  const parts = path.split("/").filter(Boolean);
  const [section, id, ...rest] = parts;
  const number = id !== undefined && /^\d+$/.test(id) ? Number(id) : null;
  if (rest.length > 0) return { page: "not-found", path };
  if (section === undefined) return { page: "datasets" };
  if (section === "datasets" && id === undefined) return { page: "datasets" };
  if (section === "datasets" && id === "catalog") return { page: "catalog" };
  if (section === "datasets" && number !== null) return { page: "dataset", datasetId: number };
  if (section === "models" && id === undefined) return { page: "models" };
  if (section === "models" && number !== null) return { page: "model", modelId: number };
  if (section === "jobs" && id === undefined) return { page: "jobs" };
  if (section === "jobs" && number !== null) return { page: "job", jobId: number };
  return { page: "not-found", path };
}

/** The link target for a route. */
export function href(route: Route): string {
  switch (route.page) {
    case "datasets":
      return "#/datasets";
    case "catalog":
      return "#/datasets/catalog";
    case "dataset":
      return `#/datasets/${route.datasetId}`;
    case "models":
      return "#/models";
    case "model":
      return `#/models/${route.modelId}`;
    case "jobs":
      return "#/jobs";
    case "job":
      return `#/jobs/${route.jobId}`;
    case "not-found":
      return `#${route.path}`;
  }
}

/** Goes to a route. */
export function navigate(route: Route): void {
  window.location.hash = href(route);
}

/** The current route, updated as the hash changes. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const update = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener("hashchange", update);
    return () => window.removeEventListener("hashchange", update);
  }, []);
  return route;
}
