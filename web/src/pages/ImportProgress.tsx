// A dataset import job followed live: progress while it runs, then a link to the ready dataset.
import { useEffect, useRef } from "react";

import { describeEvent, useJobStream } from "../api/training";
import type { StartedImport } from "../api/types";
import { ErrorNotice, ProgressBar, SuccessNotice } from "../components/ui";
import { formatPercent } from "../format";
import { href } from "../router";

/** Follows `started.jobId`; `onChanged` runs once when the job ends, however it ends. */
export function ImportProgress({
  started,
  onChanged,
}: {
  started: StartedImport;
  onChanged?: () => void;
}) {
  const stream = useJobStream(started.jobId);
  const last = stream.events[stream.events.length - 1];
  const notified = useRef(false);

  useEffect(() => {
    if (stream.outcome && !notified.current) {
      notified.current = true;
      onChanged?.();
    }
  }, [stream.outcome, onChanged]);

  if (stream.problem) return <ErrorNotice message={`Live updates stopped: ${stream.problem}`} />;
  if (stream.outcome === "error") {
    return (
      <ErrorNotice
        message={`The import failed: ${last ? describeEvent(last) : "no reason given."}`}
      />
    );
  }
  if (stream.outcome === "completed") {
    return (
      <SuccessNotice>
        The dataset is ready. <a href={href({ page: "dataset", datasetId: started.id })}>Open it</a>
        .
      </SuccessNotice>
    );
  }
  return (
    <div className="stack" data-testid="import-progress">
      <div className="row-between">
        <span>Importing images…</span>
        <span className="muted">
          {stream.progress === null ? "" : formatPercent(stream.progress)}
        </span>
      </div>
      <ProgressBar value={stream.progress} label="Import progress" />
      <p className="muted small">
        {last ? describeEvent(last) : "Waiting for a worker to pick up the import."}{" "}
        {stream.state === "reconnecting" && "(reconnecting…)"}
      </p>
      <p className="muted small">
        You can close this window; the import goes on. Follow it under{" "}
        <a href={href({ page: "job", jobId: started.jobId })}>job #{started.jobId}</a>.
      </p>
    </div>
  );
}
