// Importing a model from a public repository, or an untrained architecture, by its id there.
import { useState } from "react";
import type { FormEvent, ReactNode } from "react";

import { describeError } from "../api/errors";
import { importRepositoryModel } from "../api/upload";
import type { RepositoryImport } from "../api/upload";
import { Dialog, ErrorNotice, Field } from "../components/ui";

/** What the form says about one repository the import route knows. */
interface RepositoryChoice {
  value: string;
  label: string;
  example: string;
  /** Follows the example in the model id's hint: the id's shape and where the files come from. */
  about: string;
  /** What a revision means there; absent where the id alone decides. */
  revision?: string;
  /** Whether a state dict from there may need its architecture named. */
  asksArchitecture: boolean;
}

const REPOSITORY_CHOICES: readonly RepositoryChoice[] = [
  {
    value: "huggingface",
    label: "Hugging Face Hub",
    example: "timm/resnet18.a1_in1k",
    about:
      "ORG/NAME, in timm's or transformers' layout. Without a network, Kai reads huggingface_hub's local cache.",
    revision: "A branch, tag or commit; the newest commit on main when empty.",
    asksArchitecture: true,
  },
  {
    value: "pytorch-hub",
    label: "PyTorch Hub (torchvision, timm)",
    example: "torchvision:resnet18",
    about:
      "torchvision:NAME or timm:NAME, pretrained weights. Without a network, Kai reads torch.hub's local cache (and the Hugging Face cache for timm).",
    revision:
      "torchvision's weights tag, such as IMAGENET1K_V1 (DEFAULT when empty); a timm id carries its tag in the name, timm:efficientnet_lite0.ra_in1k.",
    asksArchitecture: false,
  },
  {
    value: "onnx-model-zoo",
    label: "ONNX Model Zoo",
    example: "resnet18-v1-7",
    about:
      "A model's name or its path in the zoo. Without a network, Kai reads the local Hugging Face cache of onnx/models.",
    revision: "A branch, tag or commit of onnx/models; the newest when empty.",
    asksArchitecture: false,
  },
  {
    value: "kaggle",
    label: "Kaggle Models",
    example: "google/mobilenet-v2/tensorFlow2/100-224-classification",
    about:
      "OWNER/MODEL/FRAMEWORK/VARIATION, with an optional /VERSION. Without a network, Kai reads kagglehub's local cache.",
    revision: "A version number, when the id names none; the newest when empty.",
    asksArchitecture: true,
  },
  {
    value: "tensorflow-hub",
    label: "TensorFlow Hub",
    example: "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/classification/5",
    about:
      "A tfhub.dev address, read as the Kaggle model it moved to. Without a network, Kai reads kagglehub's local cache.",
    revision: "A version number, when the address names none; the newest when empty.",
    asksArchitecture: false,
  },
  {
    value: "url",
    label: "Web address (URL)",
    example: "https://example.com/models/classifier.onnx",
    about: "An https address of one model file. Kai downloads it, so this needs the network.",
    asksArchitecture: true,
  },
  {
    value: "architecture",
    label: "Architecture, untrained",
    example: "resnet18",
    about:
      "A timm or torchvision name, bare or as timm:NAME or torchvision:NAME. The model starts untrained, with fresh weights, and trains from scratch; no network needed.",
    asksArchitecture: false,
  },
  {
    value: "bundled",
    label: "Bundled with Kai",
    example: "efficientnet_lite0",
    about: "The ImageNet-trained EfficientNet-Lite0 installed with Kai; no network needed.",
    asksArchitecture: false,
  },
];

const DEFAULT_CHOICE = REPOSITORY_CHOICES[0]!;

function choiceOf(value: string): RepositoryChoice {
  return REPOSITORY_CHOICES.find((choice) => choice.value === value) ?? DEFAULT_CHOICE;
}

/** The name the server gives a model left unnamed: the id's last part. */
function defaultName(modelId: string): string {
  const trimmed = modelId.trim().replace(/\/+$/, "");
  return trimmed.split("/").pop() || "model";
}

/** `porcelain, wood` as `["porcelain", "wood"]`; a new line separates names too. */
function parseClassNames(text: string): string[] {
  return text
    .split(/[,\n]/)
    .map((name) => name.trim())
    .filter(Boolean);
}

interface ImportForm {
  repository: string;
  modelId: string;
  name: string;
  description: string;
  revision: string;
  architecture: string;
  classNames: string;
}

const EMPTY_FORM: ImportForm = {
  repository: DEFAULT_CHOICE.value,
  modelId: "",
  name: "",
  description: "",
  revision: "",
  architecture: "",
  classNames: "",
};

/** The request for the form, without the fields the chosen repository does not take. */
function importRequest(form: ImportForm): RepositoryImport {
  const choice = choiceOf(form.repository);
  return {
    repository: choice.value,
    modelId: form.modelId.trim(),
    name: form.name.trim(),
    description: form.description.trim(),
    revision: choice.revision ? form.revision.trim() : "",
    architecture: choice.asksArchitecture ? form.architecture.trim() : "",
    classNames: parseClassNames(form.classNames),
  };
}

function optional(label: string): ReactNode {
  return (
    <>
      {label} <span className="muted">(optional)</span>
    </>
  );
}

function AdvancedFields({
  form,
  onChange,
}: {
  form: ImportForm;
  onChange: (change: Partial<ImportForm>) => void;
}) {
  const choice = choiceOf(form.repository);
  return (
    <details className="advanced">
      <summary>Advanced</summary>
      <div className="stack">
        {choice.revision && (
          <Field label={optional("Revision")} hint={choice.revision}>
            {(ids) => (
              <input
                {...ids}
                name="revision"
                value={form.revision}
                onChange={(event) => onChange({ revision: event.target.value })}
                maxLength={200}
                spellCheck={false}
              />
            )}
          </Field>
        )}
        {choice.asksArchitecture && (
          <Field
            label={optional("Architecture")}
            hint="The timm or torchvision name a state dict's weights belong to, when the repository does not say."
          >
            {(ids) => (
              <input
                {...ids}
                name="architecture"
                value={form.architecture}
                onChange={(event) => onChange({ architecture: event.target.value })}
                maxLength={200}
                spellCheck={false}
              />
            )}
          </Field>
        )}
        <Field
          label={optional("Class names")}
          hint={
            choice.value === "architecture"
              ? "The outputs of the new head, in order, separated by commas; 1,000 outputs when empty. Training on a dataset replaces them with its classes."
              : "The names of the model's outputs, in order, separated by commas; they win over what the repository says."
          }
        >
          {(ids) => (
            <input
              {...ids}
              name="classNames"
              value={form.classNames}
              onChange={(event) => onChange({ classNames: event.target.value })}
              placeholder="porcelain, wood, stone"
            />
          )}
        </Field>
      </div>
    </details>
  );
}

/** The form; `onStarted` receives the new model's id once the server has queued its import. */
export function RepositoryImportDialog({
  onClose,
  onStarted,
}: {
  onClose: () => void;
  onStarted: (modelId: number) => void;
}) {
  const [form, setForm] = useState<ImportForm>(EMPTY_FORM);
  const [sending, setSending] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const change = (update: Partial<ImportForm>) => setForm((current) => ({ ...current, ...update }));
  const choice = choiceOf(form.repository);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!form.modelId.trim()) return;
    setError(null);
    setSending(true);
    try {
      const answer = await importRepositoryModel(importRequest(form));
      onStarted(answer.id);
    } catch (reason) {
      setError(describeError(reason));
      setSending(false);
    }
  };

  return (
    <Dialog title="Import from a repository" onClose={onClose}>
      <form className="stack" onSubmit={submit} aria-label="Import from a repository">
        {error && <ErrorNotice message={error} />}
        <Field label="Repository">
          {(ids) => (
            <select
              {...ids}
              name="repository"
              value={form.repository}
              onChange={(event) => change({ repository: event.target.value })}
            >
              {REPOSITORY_CHOICES.map((option) => (
                <option key={option.value} value={option.value}>
                  {option.label}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field
          label="Model id"
          hint={
            <>
              Such as <code>{choice.example}</code>. {choice.about}
            </>
          }
        >
          {(ids) => (
            <input
              {...ids}
              name="modelId"
              value={form.modelId}
              onChange={(event) => change({ modelId: event.target.value })}
              placeholder={choice.example}
              required
              maxLength={1000}
              spellCheck={false}
              autoComplete="off"
            />
          )}
        </Field>
        <Field label={optional("Name")}>
          {(ids) => (
            <input
              {...ids}
              name="name"
              value={form.name}
              onChange={(event) => change({ name: event.target.value })}
              placeholder={form.modelId.trim() ? defaultName(form.modelId) : "Named after the id"}
              maxLength={200}
            />
          )}
        </Field>
        <Field label={optional("Description")}>
          {(ids) => (
            <textarea
              {...ids}
              name="description"
              rows={2}
              value={form.description}
              onChange={(event) => change({ description: event.target.value })}
            />
          )}
        </Field>
        <AdvancedFields form={form} onChange={change} />
        <div className="dialog-actions">
          <button type="button" className="button-secondary" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" disabled={!form.modelId.trim() || sending}>
            {sending ? "Starting…" : "Import"}
          </button>
        </div>
      </form>
    </Dialog>
  );
}
