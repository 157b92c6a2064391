// Uploading a model: the form, the byte progress of the upload, then the import job's live progress.
import { useEffect, useRef, useState } from "react";
import type { FormEvent } from "react";

import { describeError } from "../api/errors";
import type { ModelUploadAnswer } from "../api/types";
import { uploadModel } from "../api/upload";
import type { UploadProgress } from "../api/upload";
import { Dialog, ErrorNotice, Field, ProgressBar } from "../components/ui";
import { formatBytes } from "../format";
import { navigate } from "../router";
import { ImportProgress } from "./ImportProgress";

type Phase =
  | { step: "form" }
  | { step: "uploading"; progress: UploadProgress | null }
  | { step: "importing"; answer: ModelUploadAnswer };

const FRAMEWORKS: readonly { value: string; label: string }[] = [
  { value: "", label: "Detect from the file" },
  { value: "pytorch", label: "PyTorch (state dict or TorchScript)" },
  { value: "onnx", label: "ONNX" },
];

function baseName(file: File): string {
  return file.name
    .replace(/\.(safetensors|pt|pth|bin|onnx|ts|zip)$/i, "")
    .replace(/[_-]+/g, " ")
    .trim();
}

export function ModelUploadDialog({
  onClose,
  onChanged,
}: {
  onClose: () => void;
  onChanged: () => void;
}) {
  const [file, setFile] = useState<File | null>(null);
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [framework, setFramework] = useState("");
  const [architecture, setArchitecture] = useState("");
  const [phase, setPhase] = useState<Phase>({ step: "form" });
  const [error, setError] = useState<string | null>(null);
  const abort = useRef<AbortController | null>(null);

  useEffect(() => () => abort.current?.abort(), []);

  const chooseFile = (chosen: File | null) => {
    setFile(chosen);
    if (chosen && !name) setName(baseName(chosen));
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!file) return;
    setError(null);
    setPhase({ step: "uploading", progress: null });
    abort.current = new AbortController();
    try {
      const upload = {
        file,
        name: name.trim(),
        description: description.trim(),
        framework,
        architecture: architecture.trim(),
      };
      const answer = await uploadModel(
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
    <Dialog title="Upload a model" onClose={onClose}>
      <form
        className="stack"
        onSubmit={submit}
        aria-label="Upload a model"
        hidden={phase.step !== "form"}
      >
        {error && <ErrorNotice message={error} />}
        <Field
          label="Model file"
          hint="A PyTorch state dict (.safetensors, .pt), a TorchScript file or an ONNX graph. Kai loads it safely: no pickled code runs."
        >
          {(ids) => (
            <input
              {...ids}
              type="file"
              name="file"
              accept=".safetensors,.pt,.pth,.bin,.onnx,.ts"
              onChange={(event) => chooseFile(event.target.files?.[0] ?? null)}
              required
            />
          )}
        </Field>
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
              rows={2}
              value={description}
              onChange={(event) => setDescription(event.target.value)}
            />
          )}
        </Field>
        <Field label="Framework">
          {(ids) => (
            <select
              {...ids}
              name="framework"
              value={framework}
              onChange={(event) => setFramework(event.target.value)}
            >
              {FRAMEWORKS.map((option) => (
                <option key={option.value} value={option.value}>
                  {option.label}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field
          label={
            <>
              Architecture <span className="muted">(needed for a state dict)</span>
            </>
          }
          hint="The timm or torchvision name the weights belong to, such as efficientnet_lite0 or resnet18."
        >
          {(ids) => (
            <input
              {...ids}
              name="architecture"
              value={architecture}
              onChange={(event) => setArchitecture(event.target.value)}
              maxLength={200}
              spellCheck={false}
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
          <ImportProgress started={phase.answer} onChanged={onChanged} kind="model" />
          <div className="dialog-actions">
            <button type="button" className="button-secondary" onClick={onClose}>
              Done
            </button>
            <button
              type="button"
              onClick={() => {
                onClose();
                navigate({ page: "model", modelId: phase.answer.id });
              }}
            >
              Open model
            </button>
          </div>
        </div>
      )}
    </Dialog>
  );
}
