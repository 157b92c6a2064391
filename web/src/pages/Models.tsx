// The models list, with the upload dialog.
import { useState } from "react";

import { api, unwrap } from "../api/client";
import type { ModelSummary } from "../api/types";
import { Card, ErrorNotice, Loading, Pager, StatusBadge } from "../components/ui";
import { formatCount, formatTime } from "../format";
import { useResource } from "../resource";
import { href } from "../router";
import { ModelUploadDialog } from "./ModelUploadDialog";

const PAGE_SIZE = 20;

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
              Upload a PyTorch state dict (.safetensors or .pt), a TorchScript file or an ONNX
              graph; Kai inspects it safely and records its first version.
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
    </div>
  );
}
