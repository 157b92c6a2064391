// The sample gallery: thumbnails filtered by class and split, and edits that make a new version.
import { useEffect, useState } from "react";

import { api, unwrap } from "../api/client";
import { describeError } from "../api/errors";
import type { Sample, SampleEdit, SampleOperation, Split } from "../api/types";
import { SPLITS } from "../api/types";
import { Card, ErrorNotice, Loading, Pager, SuccessNotice } from "../components/ui";
import { plural } from "../format";
import { useResource } from "../resource";

const PAGE_SIZE = 48;

/** An edit of the selected samples, before the selection is attached. */
type Edit = { op: "relabel"; label: string } | { op: "remove" } | { op: "move"; split: Split };

function toOperation(edit: Edit, sampleIds: string[]): SampleOperation {
  return { ...edit, sampleIds };
}

function thumbnailUrl(datasetId: number, sample: Sample): string {
  return `/api/admin/datasets/${datasetId}/samples/${encodeURIComponent(sample.id)}/thumbnail`;
}

function Thumbnail({
  datasetId,
  sample,
  selected,
  onToggle,
}: {
  datasetId: number;
  sample: Sample;
  selected: boolean;
  onToggle: () => void;
}) {
  return (
    <li
      className={selected ? "tile selected" : "tile"}
      data-sample-id={sample.id}
      data-label={sample.label}
    >
      <label title={sample.originalName}>
        <input
          type="checkbox"
          checked={selected}
          onChange={onToggle}
          aria-label={`Select ${sample.originalName}`}
        />
        <img
          src={thumbnailUrl(datasetId, sample)}
          alt={sample.originalName}
          loading="lazy"
          width={120}
          height={120}
        />
        <span className="tile-caption">
          <span className="tile-label truncate">{sample.label}</span>
          <span className={`tile-split split-text-${sample.split}`}>{sample.split}</span>
        </span>
      </label>
    </li>
  );
}

function EditBar({
  count,
  classes,
  busy,
  onApply,
  onClear,
}: {
  count: number;
  classes: string[];
  busy: boolean;
  onApply: (edit: Edit) => void;
  onClear: () => void;
}) {
  const [label, setLabel] = useState("");
  const [split, setSplit] = useState<Split>("train");
  return (
    <div className="edit-bar" role="toolbar" aria-label="Edit selected samples">
      <span className="strong">{plural(count, "sample")} selected</span>
      <span className="edit-group">
        <input
          list="known-classes"
          placeholder="New label"
          aria-label="New label"
          value={label}
          onChange={(event) => setLabel(event.target.value)}
        />
        <datalist id="known-classes">
          {classes.map((name) => (
            <option key={name} value={name} />
          ))}
        </datalist>
        <button
          type="button"
          disabled={busy || !label.trim()}
          onClick={() => onApply({ op: "relabel", label: label.trim() })}
        >
          Relabel
        </button>
      </span>
      <span className="edit-group">
        <select
          aria-label="Move to split"
          value={split}
          onChange={(event) => setSplit(event.target.value as Split)}
        >
          {SPLITS.map((name) => (
            <option key={name} value={name}>
              {name}
            </option>
          ))}
        </select>
        <button
          type="button"
          className="button-secondary"
          disabled={busy}
          onClick={() => onApply({ op: "move", split })}
        >
          Move
        </button>
      </span>
      <button
        type="button"
        className="button-danger"
        disabled={busy}
        onClick={() => onApply({ op: "remove" })}
      >
        Remove
      </button>
      <button type="button" className="button-link" onClick={onClear}>
        Clear selection
      </button>
    </div>
  );
}

export function SampleGallery({
  datasetId,
  classes,
  version,
  onVersionCreated,
}: {
  datasetId: number;
  classes: string[];
  version: number | null;
  onVersionCreated: () => void;
}) {
  const [label, setLabel] = useState("");
  const [split, setSplit] = useState<Split | "">("");
  const [page, setPage] = useState(1);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [busy, setBusy] = useState(false);
  const [editError, setEditError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);

  const samples = useResource(
    () =>
      unwrap(
        api.GET("/api/admin/datasets/{dataset_id}/samples", {
          params: {
            path: { dataset_id: datasetId },
            query: {
              page,
              pageSize: PAGE_SIZE,
              label: label || undefined,
              split: split || undefined,
            },
          },
        }),
      ),
    [datasetId, page, label, split, version],
  );

  useEffect(() => {
    setSelected(new Set());
  }, [datasetId, page, label, split, version]);

  const toggle = (id: string) =>
    setSelected((current) => {
      const next = new Set(current);
      if (next.has(id)) next.delete(id);
      else next.add(id);
      return next;
    });

  const apply = async (edit: Edit) => {
    setBusy(true);
    setEditError(null);
    setNotice(null);
    const sampleIds = [...selected];
    const body: SampleEdit = { operations: [toOperation(edit, sampleIds)] };
    try {
      const created = await unwrap(
        api.POST("/api/admin/datasets/{dataset_id}/versions", {
          params: { path: { dataset_id: datasetId } },
          body,
        }),
      );
      setNotice(
        `Version ${created.number} created: ${plural(sampleIds.length, "sample")} ${pastTense(edit.op)}.`,
      );
      onVersionCreated();
    } catch (reason) {
      setEditError(describeError(reason));
    } finally {
      setBusy(false);
    }
  };

  const list = samples.data;
  return (
    <Card
      title="Samples"
      className="gallery-card"
      actions={
        <div className="filters">
          <select
            aria-label="Filter by class"
            value={label}
            onChange={(event) => {
              setLabel(event.target.value);
              setPage(1);
            }}
          >
            <option value="">All classes</option>
            {classes.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
          <select
            aria-label="Filter by split"
            value={split}
            onChange={(event) => {
              setSplit(event.target.value as Split | "");
              setPage(1);
            }}
          >
            <option value="">All splits</option>
            {SPLITS.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        </div>
      }
    >
      {notice && <SuccessNotice>{notice}</SuccessNotice>}
      {editError && <ErrorNotice message={editError} />}
      {selected.size > 0 && (
        <EditBar
          count={selected.size}
          classes={classes}
          busy={busy}
          onApply={(op) => void apply(op)}
          onClear={() => setSelected(new Set())}
        />
      )}
      {samples.error && <ErrorNotice message={samples.error} onRetry={samples.reload} />}
      {!list && !samples.error && <Loading what="samples" />}
      {list && list.items.length === 0 && (
        <p className="muted empty">No samples match these filters.</p>
      )}
      {list && list.items.length > 0 && (
        <>
          <p className="muted small">{plural(list.total, "sample")}</p>
          <ul className="gallery" aria-label="Samples">
            {list.items.map((sample) => (
              <Thumbnail
                key={sample.id}
                datasetId={datasetId}
                sample={sample}
                selected={selected.has(sample.id)}
                onToggle={() => toggle(sample.id)}
              />
            ))}
          </ul>
          <Pager page={page} pageSize={PAGE_SIZE} total={list.total} onPage={setPage} />
        </>
      )}
    </Card>
  );
}

function pastTense(op: Edit["op"]): string {
  return { relabel: "relabelled", move: "moved", remove: "removed" }[op];
}
