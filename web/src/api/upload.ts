// Dataset and model uploads over XMLHttpRequest, which, unlike fetch, reports upload progress.
import { csrfToken } from "./csrf";
import { networkError, toApiError } from "./errors";
import type { ModelUploadAnswer, UploadAnswer } from "./types";

/** What the upload form collects. */
export interface DatasetUpload {
  file: File;
  images: File | null;
  name: string;
  description: string;
}

/** Bytes sent so far out of the total, as the browser reports them. */
export interface UploadProgress {
  sentBytes: number;
  totalBytes: number;
}

const UPLOAD_PATH = "/api/admin/datasets/upload";

function formFor(upload: DatasetUpload): FormData {
  const form = new FormData();
  form.append("file", upload.file);
  if (upload.images) form.append("images", upload.images);
  form.append("name", upload.name);
  form.append("description", upload.description);
  return form;
}

function parseBody(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** Sends the files and resolves with the new dataset's id and its import job. */
export function uploadDataset(
  upload: DatasetUpload,
  onProgress: (progress: UploadProgress) => void,
  signal?: AbortSignal,
): Promise<UploadAnswer> {
  return sendForm<UploadAnswer>(UPLOAD_PATH, formFor(upload), onProgress, signal);
}

/** What the model upload form collects. */
export interface ModelUpload {
  file: File;
  name: string;
  description: string;
  /** Empty to let the server detect it from the file. */
  framework: string;
  architecture: string;
}

const MODEL_UPLOAD_PATH = "/api/admin/models/upload";

function modelFormFor(upload: ModelUpload): FormData {
  const form = new FormData();
  form.append("file", upload.file);
  form.append("name", upload.name);
  form.append("description", upload.description);
  if (upload.framework) form.append("framework", upload.framework);
  if (upload.architecture) form.append("architecture", upload.architecture);
  return form;
}

/** Sends a model file and resolves with the new model's id and its import job. */
export function uploadModel(
  upload: ModelUpload,
  onProgress: (progress: UploadProgress) => void,
  signal?: AbortSignal,
): Promise<ModelUploadAnswer> {
  return sendForm<ModelUploadAnswer>(MODEL_UPLOAD_PATH, modelFormFor(upload), onProgress, signal);
}

function sendForm<T>(
  path: string,
  form: FormData,
  onProgress: (progress: UploadProgress) => void,
  signal?: AbortSignal,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", path);
    request.withCredentials = true;
    const token = csrfToken();
    if (token) request.setRequestHeader("X-CSRF-Token", token);
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress({ sentBytes: event.loaded, totalBytes: event.total });
    };
    request.onload = () => {
      const body = parseBody(request.responseText);
      if (request.status >= 200 && request.status < 300) resolve(body as T);
      else reject(toApiError(body, request.status));
    };
    request.onerror = () => reject(networkError());
    request.onabort = () => reject(new DOMException("Upload cancelled", "AbortError"));
    signal?.addEventListener("abort", () => request.abort());
    request.send(form);
  });
}

/** A repository import: the repository, the model's id there, and the new model's name. */
export interface RepositoryImport {
  repository: string;
  modelId: string;
  /** Empty to let the server name the model after the id's last part. */
  name: string;
  description: string;
  /** A branch, tag, commit, weights tag or version, as the repository understands it. */
  revision?: string;
  /** The timm or torchvision name a state dict belongs to, when the repository does not say. */
  architecture?: string;
  /** The names of the model's outputs, in order; they win over what the repository says. */
  classNames?: readonly string[];
}

const REPOSITORY_IMPORT_PATH = "/api/admin/models/import/repository";

function repositoryFormFor(request: RepositoryImport): FormData {
  const form = new FormData();
  form.append("repository", request.repository);
  form.append("modelId", request.modelId);
  form.append("name", request.name);
  form.append("description", request.description);
  if (request.revision) form.append("revision", request.revision);
  if (request.architecture) form.append("architecture", request.architecture);
  // A JSON list, so that the server reads each name whole, whatever characters it holds.
  if (request.classNames?.length) form.append("classNames", JSON.stringify(request.classNames));
  return form;
}

/** Starts a repository import and resolves with the new model's id and its import job. */
export function importRepositoryModel(request: RepositoryImport): Promise<ModelUploadAnswer> {
  return sendForm<ModelUploadAnswer>(
    REPOSITORY_IMPORT_PATH,
    repositoryFormFor(request),
    () => undefined,
  );
}
