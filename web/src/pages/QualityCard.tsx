// A dataset's quality report: the score, its breakdown, recommendations and the flagged samples.
import { useEffect, useState } from "react";

import { api, unwrap } from "../api/client";
import { ApiError, describeError } from "../api/errors";
import { describeEvent, useJobStream } from "../api/training";
import type { QualityIssue, QualityReport } from "../api/types";
import { Card, ErrorNotice, Loading, ProgressBar } from "../components/ui";
import { formatTime, plural } from "../format";
import { useResource } from "../resource";

const ISSUES_SHOWN = 24;

/** One family's row of the score breakdown, as the report stores it. */
interface FamilyRow {
  family: string;
  ran: boolean;
  weight?: number;
  points?: number;
  share?: number;
  reason?: string;
}

/** One recommendation, as the report stores it. */
interface Recommendation {
  type: string;
  severity: string;
  title: string;
  affectedCount: number;
  action: { fix: string | null; how: string };
}

function familiesOf(report: QualityReport): FamilyRow[] {
  const rows = report.scoreBreakdown["families"];
  return Array.isArray(rows) ? (rows as FamilyRow[]) : [];
}

function recommendationsOf(report: QualityReport): Recommendation[] {
  return report.recommendations as unknown as Recommendation[];
}

function words(name: string): string {
  const spaced = name
    .replace(/_/g, " ")
    .replace(/([a-z])([A-Z])/g, "$1 $2")
    .toLowerCase();
  return spaced.charAt(0).toUpperCase() + spaced.slice(1);
}

function FamilyPoints({ row }: { row: FamilyRow }) {
  const weight = row.weight ?? 0;
  const points = row.points ?? 0;
  const filled = weight > 0 ? Math.max(0, Math.min(1, points / weight)) : 0;
  return (
    <div className="family-points" title={`${points.toFixed(1)} of ${weight.toFixed(1)} points`}>
      <span className="family-bar" aria-hidden="true">
        <span style={{ width: `${(filled * 100).toFixed(0)}%` }} />
      </span>
      <span className="numeric small">
        {points.toFixed(1)} / {weight.toFixed(1)}
      </span>
    </div>
  );
}

function Breakdown({ report }: { report: QualityReport }) {
  return (
    <table className="table compact breakdown" aria-label="Score breakdown">
      <thead>
        <tr>
          <th>Family</th>
          <th>Points kept</th>
          <th className="numeric">Affected</th>
        </tr>
      </thead>
      <tbody>
        {familiesOf(report).map((row) =>
          row.ran ? (
            <tr key={row.family}>
              <td>{words(row.family)}</td>
              <td>
                <FamilyPoints row={row} />
              </td>
              <td className="numeric">{`${((row.share ?? 0) * 100).toFixed(0)}%`}</td>
            </tr>
          ) : (
            <tr key={row.family}>
              <td>{words(row.family)}</td>
              <td colSpan={2} className="muted small">
                Not run: {row.reason ?? "skipped"}
              </td>
            </tr>
          ),
        )}
      </tbody>
    </table>
  );
}

function Recommendations({ items }: { items: Recommendation[] }) {
  if (items.length === 0) return <p className="muted">No recommendations: nothing to fix.</p>;
  return (
    <ul className="recommendations" aria-label="Recommendations">
      {items.map((item) => (
        <li key={item.type} data-severity={item.severity}>
          <span className={`badge severity-${item.severity}`}>{item.severity}</span>
          <div>
            <p className="strong">
              {item.title} <span className="muted">· {plural(item.affectedCount, "sample")}</span>
            </p>
            <p className="small">{item.action.how}</p>
          </div>
        </li>
      ))}
    </ul>
  );
}

function evidenceText(evidence: Record<string, unknown>): string {
  return Object.entries(evidence)
    .filter(([, value]) => ["string", "number", "boolean"].includes(typeof value))
    .slice(0, 3)
    .map(([key, value]) => `${key}: ${typeof value === "number" ? +value.toFixed(3) : value}`)
    .join(" · ");
}

function Issues({ datasetId, report }: { datasetId: number; report: QualityReport }) {
  const issues = useResource(
    () =>
      unwrap(
        api.GET("/api/admin/datasets/{dataset_id}/quality/issues", {
          params: {
            path: { dataset_id: datasetId },
            query: { version: report.version, pageSize: ISSUES_SHOWN },
          },
        }),
      ),
    [datasetId, report.id],
  );
  if (issues.error) return <ErrorNotice message={issues.error} onRetry={issues.reload} />;
  if (!issues.data) return <Loading what="issues" />;
  if (issues.data.items.length === 0) return <p className="muted">No sample has an issue.</p>;
  return (
    <>
      <p className="muted small">
        Showing {issues.data.items.length} of {plural(issues.data.total, "issue")}.
      </p>
      <ul className="issue-grid" aria-label="Quality issues">
        {issues.data.items.map((issue: QualityIssue, index) => (
          <li key={`${issue.sampleId}-${issue.type}-${index}`} data-issue={issue.type}>
            <img
              src={`/api/admin/datasets/${datasetId}/samples/${encodeURIComponent(issue.sampleId)}/thumbnail`}
              alt={issue.originalName ?? issue.sampleId}
              loading="lazy"
            />
            <span className="strong small">{words(issue.type)}</span>
            <span className="muted small">
              {issue.label ?? "—"} · {issue.severity}
            </span>
            <span className="small evidence">{evidenceText(issue.evidence)}</span>
          </li>
        ))}
      </ul>
    </>
  );
}

function Score({ report }: { report: QualityReport }) {
  return (
    <div className="quality-score">
      <span className="score-number" data-testid="quality-score">
        {report.overallQualityScore.toFixed(1)}
      </span>
      <div>
        <span className={`badge ${report.needsImprovement ? "badge-bad" : "badge-good"}`}>
          {report.needsImprovement ? "needs improvement" : "good"}
        </span>
        <p className="muted small">
          Version {report.version}, analysed {formatTime(report.createdAt)}
          {report.scoreChange !== null &&
            ` · ${report.scoreChange >= 0 ? "+" : ""}${report.scoreChange.toFixed(1)} since v${report.parentVersion}`}
        </p>
      </div>
    </div>
  );
}

function Analysis({ jobId, onDone }: { jobId: number; onDone: () => void }) {
  const stream = useJobStream(jobId);
  const last = stream.events[stream.events.length - 1];
  useEffect(() => {
    if (stream.outcome) onDone();
  }, [stream.outcome, onDone]);
  if (stream.outcome === "error")
    return <ErrorNotice message={`The analysis failed: ${last ? describeEvent(last) : ""}`} />;
  return (
    <div className="stack">
      <ProgressBar value={stream.progress} label="Analysis progress" />
      <p className="muted small">{last ? describeEvent(last) : "Waiting for a worker…"}</p>
    </div>
  );
}

async function loadReport(datasetId: number): Promise<QualityReport | null> {
  try {
    return await unwrap(
      api.GET("/api/admin/datasets/{dataset_id}/quality", {
        params: { path: { dataset_id: datasetId } },
      }),
    );
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

/** The quality card of a ready dataset; `version` reloads it when a new version appears. */
export function QualityCard({ datasetId, version }: { datasetId: number; version: number | null }) {
  const [jobId, setJobId] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);
  // Every import queues an analysis, so a missing report usually arrives shortly.
  const report = useResource(() => loadReport(datasetId), [datasetId, version], {
    refreshMs: 3000,
    keepRefreshing: (data) => data === null || data.version !== version,
  });

  const analyse = async () => {
    setError(null);
    try {
      const started = await unwrap(
        api.POST("/api/admin/datasets/{dataset_id}/quality", {
          params: { path: { dataset_id: datasetId } },
        }),
      );
      setJobId(started.jobId);
    } catch (reason) {
      setError(describeError(reason));
    }
  };

  const data = report.data;
  const actions = (
    <button
      type="button"
      className={data ? "button-secondary" : ""}
      disabled={jobId !== null}
      onClick={() => void analyse()}
    >
      {data ? "Analyse again" : "Analyse"}
    </button>
  );
  return (
    <Card title="Quality" actions={actions} className="quality-card">
      {error && <ErrorNotice message={error} />}
      {report.error && <ErrorNotice message={report.error} onRetry={report.reload} />}
      {jobId !== null && (
        <Analysis
          jobId={jobId}
          onDone={() => {
            setJobId(null);
            report.reload();
          }}
        />
      )}
      {report.loading && report.data === null && !report.error && <Loading what="the report" />}
      {!report.loading && data === null && jobId === null && (
        <p className="muted">Not analysed yet.</p>
      )}
      {data && (
        <div className="stack">
          <div className="grid-two">
            <Score report={data} />
            <Breakdown report={data} />
          </div>
          <h3>Recommendations</h3>
          <Recommendations items={recommendationsOf(data)} />
          <h3>Issues</h3>
          <Issues datasetId={datasetId} report={data} />
        </div>
      )}
    </Card>
  );
}
