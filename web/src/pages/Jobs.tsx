// The jobs list: every background task, newest first.
import { useState } from "react";

import { api, unwrap } from "../api/client";
import type { JobSummary } from "../api/types";
import { isFinished } from "../api/types";
import { Card, ErrorNotice, Loading, Pager, ProgressBar, StatusBadge } from "../components/ui";
import { formatDuration, formatPercent, formatTime } from "../format";
import { href } from "../router";
import { useResource } from "../resource";

const PAGE_SIZE = 25;

/** `dataset.import` reads as `Dataset import`. */
export function jobTypeLabel(type: string): string {
  const words = type.replace(/[._]+/g, " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function JobRow({ job }: { job: JobSummary }) {
  return (
    <tr data-job-id={job.id}>
      <td>
        <a className="strong" href={href({ page: "job", jobId: job.id })}>
          #{job.id}
        </a>
      </td>
      <td>{jobTypeLabel(job.type)}</td>
      <td>
        <StatusBadge status={job.status} />
      </td>
      <td className="progress-cell">
        <ProgressBar value={job.progress} label={`Job ${job.id} progress`} />
        <span className="muted small">{formatPercent(job.progress)}</span>
      </td>
      <td className="nowrap">{formatTime(job.createdAt)}</td>
      <td className="nowrap muted">{formatDuration(job.startedAt, job.finishedAt) ?? "—"}</td>
    </tr>
  );
}

export function Jobs() {
  const [page, setPage] = useState(1);
  const jobs = useResource(
    () => unwrap(api.GET("/api/admin/jobs", { params: { query: { page, pageSize: PAGE_SIZE } } })),
    [page],
    {
      refreshMs: 2000,
      keepRefreshing: (list) => list.items.some((job) => !isFinished(job.status)),
    },
  );
  const list = jobs.data;

  return (
    <div className="page">
      <header className="page-header">
        <div>
          <h1>Jobs</h1>
          <p className="muted">Imports, analyses and training runs, with their progress.</p>
        </div>
      </header>
      {jobs.error && <ErrorNotice message={jobs.error} onRetry={jobs.reload} />}
      {!list && !jobs.error && <Loading what="jobs" />}
      {list && list.items.length === 0 && (
        <Card>
          <p className="muted empty">No jobs yet. Uploading a dataset starts its import job.</p>
        </Card>
      )}
      {list && list.items.length > 0 && (
        <Card>
          <table className="table" aria-label="Jobs">
            <thead>
              <tr>
                <th>Job</th>
                <th>Type</th>
                <th>Status</th>
                <th>Progress</th>
                <th>Created</th>
                <th>Took</th>
              </tr>
            </thead>
            <tbody>
              {list.items.map((job) => (
                <JobRow key={job.id} job={job} />
              ))}
            </tbody>
          </table>
          <Pager page={page} pageSize={PAGE_SIZE} total={list.total} onPage={setPage} />
        </Card>
      )}
    </div>
  );
}
