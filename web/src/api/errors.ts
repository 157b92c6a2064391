// Turns whatever went wrong in a call to the API into words a person can act on.

/** The error body every Kai route answers with on failure. */
interface ErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown> | null };
}

/** A failed API call: the server's stable code and message, or a transport problem. */
export class ApiError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details: Record<string, unknown>;

  constructor(
    code: string,
    message: string,
    status: number,
    details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.status = status;
    this.details = details;
  }
}

function isErrorBody(body: unknown): body is ErrorBody {
  if (typeof body !== "object" || body === null || !("error" in body)) return false;
  const inner = (body as { error: unknown }).error;
  return typeof inner === "object" && inner !== null && "message" in inner;
}

/** Field problems from request validation, as "field: problem" lines. */
function fieldProblems(details: Record<string, unknown>): string[] {
  const errors = details["errors"];
  if (!Array.isArray(errors)) return [];
  return errors.flatMap((item: unknown) => {
    if (typeof item !== "object" || item === null) return [];
    const { loc, msg } = item as { loc?: unknown; msg?: unknown };
    if (typeof msg !== "string") return [];
    const path = Array.isArray(loc) ? loc.filter((part) => part !== "body").join(".") : "";
    return [path ? `${path}: ${msg}` : msg];
  });
}

function fallbackMessage(status: number): string {
  if (status === 401) return "Your session has ended. Please sign in again.";
  if (status === 403) return "Your account is not allowed to do this.";
  if (status === 404) return "That item no longer exists.";
  if (status === 413) return "The file is larger than the server accepts.";
  if (status >= 500)
    return `The server hit an unexpected problem (HTTP ${status}). Try again, and check the server log if it persists.`;
  return `The request was refused (HTTP ${status}).`;
}

/** Builds an ApiError from a response status and its parsed body, whatever its shape. */
export function toApiError(body: unknown, status: number): ApiError {
  if (isErrorBody(body)) {
    const { code, message, details } = body.error;
    return new ApiError(code, message, status, details ?? {});
  }
  return new ApiError("http_error", fallbackMessage(status), status);
}

/** The error to show when the server could not be reached at all. */
export function networkError(): ApiError {
  return new ApiError(
    "network_error",
    "Kai's server could not be reached. Check that it is running, then try again.",
    0,
  );
}

/** One or more sentences that explain `error` to the person using the panel. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) {
    const problems = fieldProblems(error.details);
    return problems.length > 0 ? `${error.message} ${problems.join("; ")}.` : error.message;
  }
  if (error instanceof TypeError) return networkError().message;
  if (error instanceof Error && error.message) return error.message;
  return "Something went wrong. Please try again.";
}
