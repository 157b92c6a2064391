// The datasets list, with the upload dialog and the way into the premade catalog.
import { useState } from "react";

import { api, unwrap } from "../api/client";
import type { DatasetSummary } from "../api/types";
import { Card, ErrorNotice, Loading, Pager, StatusBadge } from "../components/ui";
import { formatCount, formatTime } from "../format";
import { useResource } from "../resource";
import { href } from "../router";
import { UploadDialog } from "./UploadDialog";

const PAGE_SIZE = 20;
const MAX_CLASS_CHIPS = 4;

function ClassChips({ names }: { names: string[] }) {
  if (names.length === 0) return <span className="muted">—</span>;
  const shown = names.slice(0, MAX_CLASS_CHIPS);
  const hidden = names.length - shown.length;
  return (
    <span className="chips">
      {shown.map((name) => (
        <span key={name} className="chip">
          {name}
        </span>
      ))}
      {hidden > 0 && <span className="chip chip-more">+{hidden}</span>}
    </span>
  );
}

function DatasetRow({ dataset }: { dataset: DatasetSummary }) {
  return (
    <tr data-dataset-id={dataset.id}>
      <td>
        <a className="strong" href={href({ page: "dataset", datasetId: dataset.id })}>
          {dataset.name}
        </a>
        {dataset.description && <div className="muted small truncate">{dataset.description}</div>}
      </td>
      <td>
        <StatusBadge status={dataset.status} />
      </td>
      <td className="numeric">{formatCount(dataset.sampleCount)}</td>
      <td>
        <ClassChips names={dataset.classes} />
      </td>
      <td className="nowrap">{formatTime(dataset.createdAt)}</td>
    </tr>
  );
}

export function Datasets() {
  const [page, setPage] = useState(1);
  const [uploading, setUploading] = useState(false);
  const datasets = useResource(
    () =>
      unwrap(api.GET("/api/admin/datasets", { params: { query: { page, pageSize: PAGE_SIZE } } })),
    [page],
    { refreshMs: 2000, keepRefreshing: (list) => list.items.some((d) => d.status === "importing") },
  );

  const list = datasets.data;
  return (
    <div className="page">
      <header className="page-header">
        <div>
          <h1>Datasets</h1>
          <p className="muted">Labelled image collections, each with immutable versions.</p>
        </div>
        <div className="card-actions">
          <a className="button button-secondary" href={href({ page: "catalog" })}>
            Browse catalog
          </a>
          <button type="button" onClick={() => setUploading(true)}>
            Upload dataset
          </button>
        </div>
      </header>
      {datasets.error && <ErrorNotice message={datasets.error} onRetry={datasets.reload} />}
      {!list && !datasets.error && <Loading what="datasets" />}
      {list && list.items.length === 0 && (
        <Card>
          <div className="empty">
            <p className="strong">No datasets yet</p>
            <p className="muted">
              Upload a ZIP with one folder per class, or a CSV that maps file names to labels, or
              import a public dataset from the <a href={href({ page: "catalog" })}>catalog</a>.
            </p>
            <button type="button" onClick={() => setUploading(true)}>
              Upload your first dataset
            </button>
          </div>
        </Card>
      )}
      {list && list.items.length > 0 && (
        <Card>
          <table className="table" aria-label="Datasets">
            <thead>
              <tr>
                <th>Name</th>
                <th>Status</th>
                <th className="numeric">Samples</th>
                <th>Classes</th>
                <th>Created</th>
              </tr>
            </thead>
            <tbody>
              {list.items.map((dataset) => (
                <DatasetRow key={dataset.id} dataset={dataset} />
              ))}
            </tbody>
          </table>
          <Pager page={page} pageSize={PAGE_SIZE} total={list.total} onPage={setPage} />
        </Card>
      )}
      {uploading && (
        <UploadDialog onClose={() => setUploading(false)} onChanged={datasets.reload} />
      )}
    </div>
  );
}
