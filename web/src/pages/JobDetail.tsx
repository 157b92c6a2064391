// One job: live progress, metrics per epoch and the event log over /ws/training.
import { useEffect, useRef, useState } from "react";

import { api, unwrap } from "../api/client";
import { describeError } from "../api/errors";
import { describeEvent, useJobStream } from "../api/training";
import type { LiveEvent, StreamState } from "../api/training";
import type { Job } from "../api/types";
import { isFinished } from "../api/types";
import { MetricsCharts } from "../components/MetricsChart";
import { Card, ErrorNotice, Loading, ProgressBar, StatusBadge } from "../components/ui";
import { formatDuration, formatPercent, formatTime } from "../format";
import { useResource } from "../resource";
import { href } from "../router";
import { jobTypeLabel } from "./Jobs";

function MetricsTable({ events }: { events: LiveEvent[] }) {
  const rows = events.filter((event) => event.type === "metrics" && event.metrics);
  if (rows.length === 0) return null;
  const entries = rows.flatMap((event) => Object.entries(event.metrics ?? {}));
  const names = [...new Set(entries.flatMap(([n, v]) => (typeof v === "number" ? [n] : [])))];
  const flagNames = [...new Set(entries.flatMap(([n, v]) => (typeof v === "boolean" ? [n] : [])))];
  return (
    <Card title="Metrics per epoch">
      <MetricsCharts rows={rows} />
      <table className="table compact" aria-label="Metrics per epoch">
        <thead>
          <tr>
            <th>Epoch</th>
            {names.map((name) => (
              <th key={name} className="numeric">
                {name}
              </th>
            ))}
            {flagNames.length > 0 && <th>Flags</th>}
          </tr>
        </thead>
        <tbody>
          {rows.map((event) => (
            <tr key={event.seq}>
              <td>{event.epoch ?? "—"}</td>
              {names.map((name) => {
                const value = event.metrics?.[name];
                return (
                  <td key={name} className="numeric">
                    {typeof value === "number" ? value.toFixed(4) : "—"}
                  </td>
                );
              })}
              {flagNames.length > 0 && (
                <td>
                  {flagNames
                    .filter((flag) => event.metrics?.[flag] === true)
                    .map((flag) => (
                      <span key={flag} className="badge badge-warn">
                        {flag}
                      </span>
                    ))}
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </Card>
  );
}

/** A search's trials: each one's latest status, its validation accuracy and what it tried. */
function TrialsTable({ events }: { events: LiveEvent[] }) {
  const trials = new Map<number, { status: string; value?: number; params?: string }>();
  for (const event of events) {
    if (event.type !== "trial" || typeof event.trial !== "number") continue;
    const seen = trials.get(event.trial) ?? { status: "running" };
    const params = event.params ? formatParams(event.params) : seen.params;
    const status = event.status === "epoch" ? seen.status : (event.status ?? seen.status);
    trials.set(event.trial, { status, value: event.value ?? seen.value, params });
  }
  if (trials.size === 0) return null;
  return (
    <Card title="Search trials">
      <table className="table compact" aria-label="Search trials">
        <thead>
          <tr>
            <th>Trial</th>
            <th>Status</th>
            <th className="numeric">Validation accuracy</th>
            <th>Hyperparameters</th>
          </tr>
        </thead>
        <tbody>
          {[...trials.entries()]
            .sort(([a], [b]) => a - b)
            .map(([number, trial]) => (
              <tr key={number} data-trial={number}>
                <td>{number}</td>
                <td>{trial.status}</td>
                <td className="numeric">
                  {typeof trial.value === "number" ? trial.value.toFixed(4) : "—"}
                </td>
                <td className="small">{trial.params ?? "—"}</td>
              </tr>
            ))}
        </tbody>
      </table>
    </Card>
  );
}

function formatParams(params: Record<string, unknown>): string {
  return Object.entries(params)
    .map(
      ([name, value]) =>
        `${name} ${typeof value === "number" && !Number.isInteger(value) ? value.toPrecision(3) : String(value)}`,
    )
    .join(" · ");
}

function EventLog({ events }: { events: LiveEvent[] }) {
  const list = useRef<HTMLOListElement>(null);
  // Keep the newest event in view inside the log, without scrolling the page.
  useEffect(() => {
    if (list.current) list.current.scrollTop = list.current.scrollHeight;
  }, [events.length]);
  return (
    <Card title="Events">
      {events.length === 0 ? (
        <p className="muted">No events yet.</p>
      ) : (
        <ol className="event-log" aria-label="Events" ref={list}>
          {events.map((event) => (
            <li key={event.seq} className={`event event-${event.type}`}>
              <span className="event-seq">{event.seq}</span>
              <span className="event-type">{event.type}</span>
              <span className="event-text">{describeEvent(event)}</span>
            </li>
          ))}
        </ol>
      )}
    </Card>
  );
}

function ResultLinks({ result }: { result: Record<string, unknown> }) {
  const datasetId = result["datasetId"];
  const modelId = result["modelId"];
  const modelVersion = result["modelVersion"];
  if (typeof datasetId !== "number" && typeof modelId !== "number") return null;
  return (
    <p className="result-links">
      {typeof datasetId === "number" && (
        <a href={href({ page: "dataset", datasetId })}>Open the dataset</a>
      )}
      {typeof modelId === "number" && (
        <a href={href({ page: "model", modelId })}>
          Open the model{typeof modelVersion === "number" ? ` (v${modelVersion})` : ""}
        </a>
      )}
    </p>
  );
}

function Overview({ job, progress }: { job: Job; progress: number }) {
  return (
    <Card title="Overview">
      <div className="row-between">
        <StatusBadge status={job.status} />
        <span className="muted">{formatPercent(progress)}</span>
      </div>
      <ProgressBar value={progress} label="Job progress" />
      <dl className="facts">
        <div>
          <dt>Created</dt>
          <dd>{formatTime(job.createdAt)}</dd>
        </div>
        <div>
          <dt>Started</dt>
          <dd>{formatTime(job.startedAt)}</dd>
        </div>
        <div>
          <dt>Finished</dt>
          <dd>{formatTime(job.finishedAt)}</dd>
        </div>
        <div>
          <dt>Took</dt>
          <dd>{formatDuration(job.startedAt, job.finishedAt) ?? "—"}</dd>
        </div>
        <div>
          <dt>Attempts</dt>
          <dd>{job.attempts}</dd>
        </div>
      </dl>
      {job.error && <ErrorNotice message={job.error} />}
      {job.result && <ResultLinks result={job.result} />}
    </Card>
  );
}

function liveLine(job: Job, state: StreamState): string {
  if (isFinished(job.status)) return `Finished ${formatTime(job.finishedAt)}`;
  if (state === "live") return "Live updates: connected";
  return `Live updates: ${state}…`;
}

export function JobDetail({ jobId }: { jobId: number }) {
  const stream = useJobStream(jobId);
  const job = useResource(
    () => unwrap(api.GET("/api/admin/jobs/{job_id}", { params: { path: { job_id: jobId } } })),
    [jobId, stream.outcome],
    { refreshMs: 3000, keepRefreshing: (j) => !isFinished(j.status) },
  );
  const [cancelError, setCancelError] = useState<string | null>(null);
  const data = job.data;

  const cancel = async () => {
    setCancelError(null);
    try {
      await unwrap(
        api.POST("/api/admin/jobs/{job_id}/cancel", { params: { path: { job_id: jobId } } }),
      );
      job.reload();
    } catch (reason) {
      setCancelError(describeError(reason));
    }
  };

  const progress = stream.progress ?? data?.progress ?? 0;
  return (
    <div className="page">
      <p className="breadcrumb">
        <a href={href({ page: "jobs" })}>Jobs</a> /
      </p>
      {job.error && <ErrorNotice message={job.error} onRetry={job.reload} />}
      {!data && !job.error && <Loading what="the job" />}
      {data && (
        <>
          <header className="page-header">
            <div>
              <h1>
                Job #{data.id} <span className="muted">· {jobTypeLabel(data.type)}</span>
              </h1>
              <p className="muted small">{liveLine(data, stream.state)}</p>
            </div>
            {!isFinished(data.status) && (
              <button type="button" className="button-danger" onClick={() => void cancel()}>
                Cancel job
              </button>
            )}
          </header>
          {cancelError && <ErrorNotice message={cancelError} />}
          {stream.problem && <ErrorNotice message={`Live updates stopped: ${stream.problem}`} />}
          <Overview
            job={data}
            progress={isFinished(data.status) && data.status === "succeeded" ? 1 : progress}
          />
          <TrialsTable events={stream.events} />
          <MetricsTable events={stream.events} />
          <EventLog events={stream.events} />
        </>
      )}
    </div>
  );
}
