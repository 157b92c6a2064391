// The models list, with the upload and repository import dialogs.
import { useState } from "react";

import { api, unwrap } from "../api/client";
import { describeError } from "../api/errors";
import type { ModelSummary } from "../api/types";
import { importRepositoryModel } from "../api/upload";
import { Card, ErrorNotice, Loading, Pager, StatusBadge } from "../components/ui";
import { formatCount, formatTime } from "../format";
import { useResource } from "../resource";
import { href } from "../router";
import { ModelUploadDialog } from "./ModelUploadDialog";
import { RepositoryImportDialog } from "./RepositoryImportDialog";

const PAGE_SIZE = 20;

/** The pretrained model that ships with Kai's install, imported with no network. */
const BUNDLED_LITE0 = {
  repository: "bundled",
  modelId: "efficientnet_lite0",
  name: "EfficientNet-Lite0",
  description: "Pretrained on ImageNet-1k (1,000 classes); a starting point for fine-tuning.",
};

function BundledImportButton({ onStarted }: { onStarted: (modelId: number) => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const start = async () => {
    setBusy(true);
    setError(null);
    try {
      const answer = await importRepositoryModel(BUNDLED_LITE0);
      onStarted(answer.id);
    } catch (reason) {
      setError(describeError(reason));
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <button
        type="button"
        className="button-secondary"
        disabled={busy}
        onClick={() => void start()}
      >
        Add pretrained EfficientNet-Lite0
      </button>
      {error && <ErrorNotice message={error} />}
    </>
  );
}

/** `pytorch · safetensors`, or a dash before the first version exists. */
export function formatLabel(model: { framework: string | null; format: string | null }): string {
  const parts = [model.framework, model.format].filter(Boolean);
  return parts.length > 0 ? parts.join(" · ") : "—";
}

function ModelRow({ model }: { model: ModelSummary }) {
  return (
    <tr data-model-id={model.id}>
      <td>
        <a className="strong" href={href({ page: "model", modelId: model.id })}>
          {model.name}
        </a>
        {model.description && <div className="muted small truncate">{model.description}</div>}
      </td>
      <td>
        <StatusBadge status={model.status} />
      </td>
      <td>{model.version === null ? "—" : `v${model.version}`}</td>
      <td className="nowrap">{formatLabel(model)}</td>
      <td>{model.architecture ?? "—"}</td>
      <td className="numeric">{model.numClasses === null ? "—" : formatCount(model.numClasses)}</td>
      <td className="nowrap">{formatTime(model.createdAt)}</td>
    </tr>
  );
}

export function Models() {
  const [page, setPage] = useState(1);
  const [uploading, setUploading] = useState(false);
  const [importing, setImporting] = useState(false);
  const models = useResource(
    () =>
      unwrap(api.GET("/api/admin/models", { params: { query: { page, pageSize: PAGE_SIZE } } })),
    [page],
    { refreshMs: 2000, keepRefreshing: (list) => list.items.some((m) => m.status === "importing") },
  );

  const list = models.data;
  return (
    <div className="page">
      <header className="page-header">
        <div>
          <h1>Models</h1>
          <p className="muted">
            Image classifiers, each with immutable versions and their lineage.
          </p>
        </div>
        <div className="card-actions">
          <BundledImportButton onStarted={models.reload} />
          <button type="button" className="button-secondary" onClick={() => setImporting(true)}>
            Import from a repository
          </button>
          <button type="button" onClick={() => setUploading(true)}>
            Upload model
          </button>
        </div>
      </header>
      {models.error && <ErrorNotice message={models.error} onRetry={models.reload} />}
      {!list && !models.error && <Loading what="models" />}
      {list && list.items.length === 0 && (
        <Card>
          <div className="empty">
            <p className="strong">No models yet</p>
            <p className="muted">
              Upload a PyTorch state dict (.safetensors or .pt), a TorchScript, ONNX, Keras or
              TFLite file; Kai inspects it safely and records its first version. Or import one from
              a repository (Hugging Face, PyTorch Hub, the ONNX Model Zoo, Kaggle, TensorFlow Hub or
              a URL), take an untrained architecture to train from scratch, or start from the
              pretrained EfficientNet-Lite0 that ships with Kai, no download needed.
            </p>
            <button type="button" onClick={() => setUploading(true)}>
              Upload your first model
            </button>
          </div>
        </Card>
      )}
      {list && list.items.length > 0 && (
        <Card>
          <table className="table" aria-label="Models">
            <thead>
              <tr>
                <th>Name</th>
                <th>Status</th>
                <th>Latest</th>
                <th>Framework</th>
                <th>Architecture</th>
                <th className="numeric">Classes</th>
                <th>Created</th>
              </tr>
            </thead>
            <tbody>
              {list.items.map((model) => (
                <ModelRow key={model.id} model={model} />
              ))}
            </tbody>
          </table>
          <Pager page={page} pageSize={PAGE_SIZE} total={list.total} onPage={setPage} />
        </Card>
      )}
      {uploading && (
        <ModelUploadDialog onClose={() => setUploading(false)} onChanged={models.reload} />
      )}
      {importing && (
        <RepositoryImportDialog
          onClose={() => setImporting(false)}
          onStarted={() => {
            setImporting(false);
            models.reload();
          }}
        />
      )}
    </div>
  );
}
