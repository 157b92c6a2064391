// An import job followed live: progress while it runs, then a link to the ready dataset or model.
import { useEffect, useRef } from "react";

import { describeEvent, useJobStream } from "../api/training";
import type { StartedImport } from "../api/types";
import { ErrorNotice, ProgressBar, SuccessNotice } from "../components/ui";
import { formatPercent } from "../format";
import { href } from "../router";
import type { Route } from "../router";

/** What the import makes: it names the thing in the words shown and links to it. */
export type ImportedKind = "dataset" | "model";

function routeTo(kind: ImportedKind, id: number): Route {
  return kind === "dataset" ? { page: "dataset", datasetId: id } : { page: "model", modelId: id };
}

/** Follows `started.jobId`; `onChanged` runs once when the job ends, however it ends. */
export function ImportProgress({
  started,
  onChanged,
  kind = "dataset",
}: {
  started: StartedImport;
  onChanged?: () => void;
  kind?: ImportedKind;
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
        The {kind} is ready. <a href={href(routeTo(kind, started.id))}>Open it</a>.
      </SuccessNotice>
    );
  }
  return (
    <div className="stack" data-testid="import-progress">
      <div className="row-between">
        <span>{kind === "dataset" ? "Importing images…" : "Importing the model…"}</span>
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
