// Classifying an image with a model: a multipart POST, which the typed client does not build.
import { csrfToken } from "./csrf";
import { networkError, toApiError } from "./errors";
import type { Predictions } from "./types";

const TOP_K = 5;

async function parseBody(response: Response): Promise<unknown> {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/** The top classes the model's latest version gives `image`. */
export async function predictImage(modelId: number, image: File): Promise<Predictions> {
  const form = new FormData();
  form.append("file", image);
  const headers = new Headers();
  const token = csrfToken();
  if (token) headers.set("X-CSRF-Token", token);
  let response: Response;
  try {
    response = await fetch(`/api/admin/models/${modelId}/predict?topK=${TOP_K}`, {
      method: "POST",
      body: form,
      headers,
      credentials: "same-origin",
    });
  } catch {
    throw networkError();
  }
  const body = await parseBody(response);
  if (!response.ok) throw toApiError(body, response.status);
  return body as Predictions;
}
