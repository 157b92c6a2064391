// A dataset's versions and the diff between any two of them.
import { useEffect, useState } from "react";

import { api, unwrap } from "../api/client";
import { describeError } from "../api/errors";
import type { ChangeSet, DatasetVersion, VersionDiff } from "../api/types";
import { Card, ErrorNotice, Loading } from "../components/ui";
import { formatTime, plural } from "../format";
import { useResource } from "../resource";

/** One sample in a change set, as the diff route lists it. */
interface DiffEntry {
  id: string;
  originalName: string;
  label: string;
  split: string;
  from?: string;
  to?: string;
}

function text(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function entriesOf(changes: ChangeSet): DiffEntry[] {
  return changes.samples.map((raw, index) => ({
    id: text(raw["id"]) ?? String(index),
    originalName: text(raw["originalName"]) ?? "",
    label: text(raw["label"]) ?? "",
    split: text(raw["split"]) ?? "",
    from: text(raw["from"]),
    to: text(raw["to"]),
  }));
}

const DIFF_SECTIONS = [
  ["added", "Added"],
  ["removed", "Removed"],
  ["relabelled", "Relabelled"],
  ["moved", "Moved"],
] as const;

function describeEntry(kind: (typeof DIFF_SECTIONS)[number][0], entry: DiffEntry): string {
  if (kind === "relabelled") return `${entry.from ?? "?"} → ${entry.to ?? entry.label}`;
  if (kind === "moved") return `${entry.from ?? "?"} → ${entry.to ?? entry.split}`;
  return `${entry.label}, ${entry.split}`;
}

function DiffView({ diff }: { diff: VersionDiff }) {
  const changes = DIFF_SECTIONS.reduce((sum, [key]) => sum + diff[key].count, 0);
  return (
    <div className="diff" data-testid="version-diff">
      <p className="strong">
        Version {diff.from} → {diff.to}: {changes === 0 ? "no changes" : plural(changes, "change")}
      </p>
      <div className="diff-summary">
        {DIFF_SECTIONS.map(([key, label]) => (
          <span key={key} className={`diff-count diff-${key}`}>
            {label} <b>{diff[key].count}</b>
          </span>
        ))}
      </div>
      {DIFF_SECTIONS.filter(([key]) => diff[key].count > 0).map(([key, label]) => (
        <div key={key} className="diff-section">
          <h3>{label}</h3>
          <ul className="diff-list" aria-label={label}>
            {entriesOf(diff[key]).map((entry) => (
              <li key={entry.id}>
                <span className="truncate">{entry.originalName}</span>
                <span className="muted">{describeEntry(key, entry)}</span>
              </li>
            ))}
          </ul>
          {diff[key].count > diff[key].samples.length && (
            <p className="muted small">
              and {plural(diff[key].count - diff[key].samples.length, "more sample")}
            </p>
          )}
        </div>
      ))}
    </div>
  );
}

function VersionSelect({
  label,
  value,
  versions,
  onChange,
}: {
  label: string;
  value: number | null;
  versions: DatasetVersion[];
  onChange: (value: number) => void;
}) {
  return (
    <label className="inline">
      {label}
      <select value={value ?? ""} onChange={(event) => onChange(Number(event.target.value))}>
        {versions.map((version) => (
          <option key={version.number} value={version.number}>
            v{version.number}
          </option>
        ))}
      </select>
    </label>
  );
}

export function VersionsPanel({ datasetId, latest }: { datasetId: number; latest: number | null }) {
  const versions = useResource(
    () =>
      unwrap(
        api.GET("/api/admin/datasets/{dataset_id}/versions", {
          params: { path: { dataset_id: datasetId } },
        }),
      ),
    [datasetId, latest],
  );
  const [from, setFrom] = useState<number | null>(null);
  const [to, setTo] = useState<number | null>(null);
  const [diff, setDiff] = useState<VersionDiff | null>(null);
  const [diffError, setDiffError] = useState<string | null>(null);
  const items = [...(versions.data ?? [])].sort((a, b) => b.number - a.number);

  // Whenever the list changes, compare the two newest versions by default.
  useEffect(() => {
    const numbers = (versions.data ?? []).map((version) => version.number).sort((a, b) => b - a);
    setTo(numbers[0] ?? null);
    setFrom(numbers[1] ?? numbers[0] ?? null);
    setDiff(null);
  }, [versions.data]);

  const compare = async () => {
    if (from === null || to === null) return;
    setDiffError(null);
    try {
      const query = { from, to };
      setDiff(
        await unwrap(
          api.GET("/api/admin/datasets/{dataset_id}/diff", {
            params: { path: { dataset_id: datasetId }, query },
          }),
        ),
      );
    } catch (reason) {
      setDiff(null);
      setDiffError(describeError(reason));
    }
  };

  return (
    <Card title="Versions">
      {versions.error && <ErrorNotice message={versions.error} onRetry={versions.reload} />}
      {!versions.data && !versions.error && <Loading what="versions" />}
      {items.length > 0 && (
        <ol className="versions" aria-label="Versions">
          {items.map((version) => (
            <li key={version.number} data-version={version.number}>
              <span className="version-number">v{version.number}</span>
              <span className="version-message truncate">{version.message || "—"}</span>
              <span className="muted small nowrap">
                {plural(version.sampleCount, "sample")} · {formatTime(version.createdAt)}
              </span>
            </li>
          ))}
        </ol>
      )}
      {items.length > 1 && (
        <div className="compare">
          <VersionSelect label="From" value={from} versions={items} onChange={setFrom} />
          <VersionSelect label="To" value={to} versions={items} onChange={setTo} />
          <button type="button" className="button-secondary" onClick={() => void compare()}>
            Compare
          </button>
        </div>
      )}
      {diffError && <ErrorNotice message={diffError} />}
      {diff && <DiffView diff={diff} />}
    </Card>
  );
}
