// Uploading a dataset: the form, the byte progress of the upload, then the import job's live progress.
import { useEffect, useRef, useState } from "react";
import type { FormEvent } from "react";

import { describeError } from "../api/errors";
import type { UploadAnswer } from "../api/types";
import { uploadDataset } from "../api/upload";
import type { UploadProgress } from "../api/upload";
import { Dialog, ErrorNotice, Field, ProgressBar } from "../components/ui";
import { formatBytes } from "../format";
import { navigate } from "../router";
import { ImportProgress } from "./ImportProgress";

type Phase =
  | { step: "form" }
  | { step: "uploading"; progress: UploadProgress | null }
  | { step: "importing"; answer: UploadAnswer };

function baseName(file: File): string {
  return file.name
    .replace(/\.(zip|csv|tsv|txt)$/i, "")
    .replace(/[_-]+/g, " ")
    .trim();
}

function isCsv(file: File | null): boolean {
  return file !== null && /\.(csv|tsv|txt)$/i.test(file.name);
}

export function UploadDialog({
  onClose,
  onChanged,
}: {
  onClose: () => void;
  onChanged: () => void;
}) {
  const [file, setFile] = useState<File | null>(null);
  const [images, setImages] = useState<File | null>(null);
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [phase, setPhase] = useState<Phase>({ step: "form" });
  const [error, setError] = useState<string | null>(null);
  const abort = useRef<AbortController | null>(null);

  useEffect(() => () => abort.current?.abort(), []);

  const chooseFile = (chosen: File | null) => {
    setFile(chosen);
    if (chosen && !name) setName(baseName(chosen));
    if (!isCsv(chosen)) setImages(null);
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!file) return;
    setError(null);
    setPhase({ step: "uploading", progress: null });
    abort.current = new AbortController();
    try {
      const upload = { file, images, name: name.trim(), description: description.trim() };
      const answer = await uploadDataset(
        upload,
        (progress) => setPhase({ step: "uploading", progress }),
        abort.current.signal,
      );
      setPhase({ step: "importing", answer });
      onChanged();
    } catch (reason) {
      if (reason instanceof DOMException && reason.name === "AbortError") return;
      setError(describeError(reason));
      setPhase({ step: "form" });
    }
  };

  return (
    <Dialog title="Upload a dataset" onClose={onClose}>
      {/* Hidden rather than unmounted while uploading, so a refused upload keeps the chosen files. */}
      <form
        className="stack"
        onSubmit={submit}
        aria-label="Upload a dataset"
        hidden={phase.step !== "form"}
      >
        {error && <ErrorNotice message={error} />}
        <Field
          label="Archive or CSV"
          hint="A ZIP with one folder per class (optionally inside train/, val/ and test/), or a CSV of file names and labels."
        >
          {(ids) => (
            <input
              {...ids}
              type="file"
              name="file"
              accept=".zip,.csv,.tsv,.txt,application/zip,text/csv"
              onChange={(event) => chooseFile(event.target.files?.[0] ?? null)}
              required
            />
          )}
        </Field>
        {isCsv(file) && (
          <Field
            label={
              <>
                Images ZIP <span className="muted">(needed unless the server has the images)</span>
              </>
            }
            hint="The images the CSV names, in a ZIP."
          >
            {(ids) => (
              <input
                {...ids}
                type="file"
                name="images"
                accept=".zip,application/zip"
                onChange={(event) => setImages(event.target.files?.[0] ?? null)}
              />
            )}
          </Field>
        )}
        <Field label="Name">
          {(ids) => (
            <input
              {...ids}
              name="name"
              value={name}
              onChange={(event) => setName(event.target.value)}
              required
              maxLength={200}
            />
          )}
        </Field>
        <Field
          label={
            <>
              Description <span className="muted">(optional)</span>
            </>
          }
        >
          {(ids) => (
            <textarea
              {...ids}
              name="description"
              rows={3}
              value={description}
              onChange={(event) => setDescription(event.target.value)}
            />
          )}
        </Field>
        <div className="dialog-actions">
          <button type="button" className="button-secondary" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" disabled={!file || !name.trim()}>
            Upload
          </button>
        </div>
      </form>
      {phase.step === "uploading" && (
        <div className="stack" data-testid="upload-progress">
          <div className="row-between">
            <span>Uploading {file?.name}…</span>
            <span className="muted">
              {phase.progress
                ? `${formatBytes(phase.progress.sentBytes)} of ${formatBytes(phase.progress.totalBytes)}`
                : ""}
            </span>
          </div>
          <ProgressBar
            value={
              phase.progress
                ? phase.progress.sentBytes / Math.max(phase.progress.totalBytes, 1)
                : null
            }
            label="Upload progress"
          />
          <div className="dialog-actions">
            <button
              type="button"
              className="button-secondary"
              onClick={() => {
                abort.current?.abort();
                setPhase({ step: "form" });
              }}
            >
              Cancel upload
            </button>
          </div>
        </div>
      )}
      {phase.step === "importing" && (
        <div className="stack">
          <ImportProgress started={phase.answer} onChanged={onChanged} />
          <div className="dialog-actions">
            <button type="button" className="button-secondary" onClick={onClose}>
              Done
            </button>
            <button
              type="button"
              onClick={() => {
                onClose();
                navigate({ page: "dataset", datasetId: phase.answer.id });
              }}
            >
              Open dataset
            </button>
          </div>
        </div>
      )}
    </Dialog>
  );
}
